"""Refunds against real databases, on both engines: the migrated schema (the new order status, its CHECK kept),
the refund repository, the `order.refunded` outbox, the sandbox's refund ledger, and concurrent refunds of one
order through the real unit of work (row lock on PostgreSQL, the write transaction on SQLite)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import timedelta

import pytest

from market.adapters.db import refunds as refunds_sql
from market.adapters.db.admin import PiccoloAdminUnitOfWork, SqlAuditLog, SqlUserDirectory
from market.adapters.db.commerce import SqlOrderRepository, SqlWebhookOutbox
from market.adapters.db.migrations import MIGRATIONS, m0009_refunds
from market.adapters.db.migrations.runner import apply_migrations
from market.adapters.db.refunds import SqlRefundRepository
from market.adapters.db.sandbox import SqlSandboxLedger
from market.adapters.db.webhooks import SqlWebhookDeliveryRepository
from market.application.admin import AdminPorts
from market.application.ports import ChargeRequest, RefundRequest, RefundResult
from market.application.refunds import refund_order
from market.domain.money import Money
from market.domain.orders import Order, OrderStatus, PaymentStatus
from market.domain.refunds import (
    OrderNotRefundable,
    Refund,
    RefundExceedsBalance,
    RefundReason,
    RefundStatus,
)
from market.domain.users import Role
from tests.support.database import add_item, add_user, count
from tests.support.factories import T0, new_order
from tests.support.fakes import FakeClock, FakePaymentGateway


async def paid_order(db, quantity: int = 2, price_cents: int = 1000) -> Order:
    seller, buyer = await add_user(db), await add_user(db, Role.BUYER)
    item = await add_item(db, seller, price_cents=price_cents)
    order = new_order(buyer, [(item, quantity)]).transition(OrderStatus.PAID, T0)
    order = dataclasses.replace(
        order, payment=dataclasses.replace(order.payment, status=PaymentStatus.SUCCEEDED)
    )
    await SqlOrderRepository(db).add(order)
    return order


def new_refund(order: Order, cents: int, **overrides) -> Refund:
    values = {
        "id": str(uuid.uuid4()),
        "order_id": order.id,
        "amount": Money(cents, order.currency),
        "status": RefundStatus.PENDING,
        "reason": RefundReason.DAMAGED,
        "created_at": T0,
        "updated_at": T0,
    }
    return Refund(**{**values, **overrides})


async def test_an_order_may_be_partially_refunded_and_the_status_check_still_holds(db):
    order = await paid_order(db)
    orders = SqlOrderRepository(db)
    await orders.save_status(order.transition(OrderStatus.PARTIALLY_REFUNDED, T0))
    assert (await orders.get(order.id)).status is OrderStatus.PARTIALLY_REFUNDED
    with pytest.raises(Exception, match=r"(?i)check"):
        await db.fetch("UPDATE orders SET status = 'half_refunded' WHERE id = {}", order.id)
    assert (await orders.get(order.id)).status is OrderStatus.PARTIALLY_REFUNDED


async def test_refunds_are_stored_read_back_and_settled(db):
    order = await paid_order(db)
    refunds = SqlRefundRepository(db)
    admin = await add_user(db, Role.ADMIN)
    first = new_refund(
        order, 300, actor_id=admin.id, idempotency_scope=str(uuid.uuid4()), idempotency_key="k"
    )
    second = new_refund(order, 200, created_at=T0.replace(second=1), updated_at=T0.replace(second=1))
    await refunds.add(first)
    await refunds.add(second)
    assert await refunds.of_order(order.id) == [first, second]
    done = first.settled(RefundStatus.SUCCEEDED, "re_1", T0.replace(minute=5))
    await refunds.save(done)
    assert (await refunds.of_order(order.id))[0] == done
    assert await refunds.of_order(str(uuid.uuid4())) == []
    assert await refunds.of_order("not-an-id") == []


async def test_the_database_refuses_a_refund_of_nothing(db):
    order = await paid_order(db)
    with pytest.raises(Exception, match=r"(?i)check"):
        await SqlRefundRepository(db).add(new_refund(order, 300, amount=Money(0, "EUR")))
    assert await count(db, "refunds") == 0


async def test_order_refunded_is_queued_for_each_seller_with_an_enabled_endpoint(db):
    order = await paid_order(db)
    seller_id = order.lines[0].seller_id
    await db.fetch(
        "INSERT INTO seller_webhooks (seller_id, url, secret, disabled_at, created_at, updated_at)"
        " VALUES ({}, 'https://example.com/hook', 'whsec_x', NULL, {}, {})",
        seller_id,
        T0,
        T0,
    )
    refund = new_refund(order, 300, status=RefundStatus.SUCCEEDED)
    changed = order.transition(OrderStatus.PARTIALLY_REFUNDED, T0)
    shares = {seller_id: Money(300, "EUR")}
    assert await SqlWebhookOutbox(db).enqueue_order_refunded(changed, refund, shares, T0) == 1
    rows = await db.fetch("SELECT seller_id, event_type, payload FROM webhook_deliveries")
    assert (str(rows[0]["seller_id"]), rows[0]["event_type"]) == (seller_id, "order.refunded")
    payload = json.loads(rows[0]["payload"])
    assert payload["type"] == "order.refunded"
    assert payload["data"]["status"] == "partially_refunded"
    assert payload["data"]["refund"] == {
        "id": refund.id,
        "amount_cents": 300,
        "currency": "EUR",
        "reason": "damaged",
        "created_at": T0.isoformat().replace("+00:00", "Z"),
    }


async def test_the_sandbox_refunds_a_charge_once_per_refund_and_never_beyond_it(db):
    ledger = SqlSandboxLedger(db)
    order_id = str(uuid.uuid4())
    charge = ChargeRequest(order_id, str(uuid.uuid4()), Money(1000, "EUR"), "card", "tok_visa")

    def request(cents: int, refund_id: str | None = None) -> RefundRequest:
        return RefundRequest(
            refund_id or str(uuid.uuid4()), order_id, charge.payment_id, "ch_1", Money(cents, "EUR"), "other"
        )

    assert (await ledger.record_refund("re_0", request(100), T0)).reason == "charge_not_found"
    await ledger.record("ch_1", charge, "succeeded", None, T0)
    first = request(600)
    assert await ledger.record_refund("re_1", first, T0) == RefundResult("succeeded", "re_1")
    assert await ledger.record_refund("re_again", first, T0) == RefundResult("succeeded", "re_1")
    assert (await ledger.record_refund("re_2", request(401), T0)).reason == "amount_exceeds_charge"
    assert (await ledger.record_refund("re_3", request(400), T0)).status == "succeeded"
    assert await count(db, "sandbox_refunds") == 2


async def test_concurrent_refunds_of_one_order_never_exceed_its_total(db):
    order = await paid_order(db, quantity=2, price_cents=1000)
    admin = await add_user(db, Role.ADMIN)
    ports = AdminPorts(
        uow=lambda: PiccoloAdminUnitOfWork(db),
        directory=SqlUserDirectory(db),
        audit=SqlAuditLog(db),
        deliveries=SqlWebhookDeliveryRepository(db),
        clock=FakeClock(),
        ids=_UuidIds(),
    )
    gateway = FakePaymentGateway()

    async def one(cents: int | None) -> Refund | Exception:
        try:
            return await refund_order(
                admin, order.id, cents, RefundReason.OTHER, ports=ports, gateway=gateway
            )
        except (RefundExceedsBalance, OrderNotRefundable) as exc:
            return exc

    outcomes = await asyncio.gather(*(one(None if n % 5 == 0 else 300) for n in range(20)))
    refunded = [o for o in outcomes if isinstance(o, Refund)]
    assert refunded, outcomes
    assert sum(r.amount.cents for r in refunded) <= order.total.cents
    stored = await SqlRefundRepository(db).of_order(order.id)
    assert sum(r.amount.cents for r in stored if r.status is RefundStatus.SUCCEEDED) == sum(
        r.amount.cents for r in refunded
    )
    assert await count(db, "audit_log") == len(refunded)
    final = await SqlOrderRepository(db).get(order.id)
    expected = (
        OrderStatus.REFUNDED
        if sum(r.amount.cents for r in refunded) == 2000
        else OrderStatus.PARTIALLY_REFUNDED
    )
    assert final.status is expected


class _UuidIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())


async def test_the_refunds_migration_keeps_existing_orders_and_widens_their_status(bare_db):
    """A database that had orders before m0009: they survive it, may then become `partially_refunded`, and an
    unknown status is still refused (SQLite: its stored table definition is edited in place; still sound)."""
    before = [m for m in MIGRATIONS if m.version < m0009_refunds.MIGRATION.version]
    await apply_migrations(bare_db.engine, before)
    with pytest.raises(Exception, match=r"(?i)check"):
        await bare_db.fetch(
            "INSERT INTO orders (id, buyer_id, status, total_cents, currency, created_at, updated_at)"
            " VALUES ({}, {}, 'partially_refunded', 100, 'EUR', {}, {})",
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            T0,
            T0,
        )
    order = await paid_order(bare_db)

    assert m0009_refunds.MIGRATION.version in await bare_db.migrate()
    orders = SqlOrderRepository(bare_db)
    assert await orders.get(order.id) == order
    await orders.save_status(order.transition(OrderStatus.PARTIALLY_REFUNDED, T0))
    assert (await orders.get(order.id)).status is OrderStatus.PARTIALLY_REFUNDED
    with pytest.raises(Exception, match=r"(?i)check"):
        await bare_db.fetch("UPDATE orders SET status = 'half_refunded' WHERE id = {}", order.id)
    if not bare_db.is_postgres:
        assert [tuple(r.values()) for r in await bare_db.fetch("PRAGMA integrity_check")] == [("ok",)]
        assert await bare_db.fetch("PRAGMA foreign_key_check") == []


async def test_pending_refunds_are_found_by_age_oldest_first(db):
    order = await paid_order(db)
    refunds = SqlRefundRepository(db)
    old = new_refund(order, 100, created_at=T0 - timedelta(hours=30), updated_at=T0 - timedelta(hours=30))
    waiting = new_refund(order, 200, created_at=T0 - timedelta(hours=2), updated_at=T0 - timedelta(hours=2))
    earlier = new_refund(order, 250, created_at=T0 - timedelta(hours=3), updated_at=T0 - timedelta(hours=3))
    fresh = new_refund(order, 300, created_at=T0, updated_at=T0)
    done = new_refund(order, 400, status=RefundStatus.SUCCEEDED, created_at=T0 - timedelta(hours=1))
    for refund in (old, waiting, earlier, fresh, done):
        await refunds.add(refund)
    found = await refunds.pending(T0 - timedelta(hours=24), T0 - timedelta(minutes=1), 10)
    assert found == [earlier, waiting]
    assert await refunds.pending(T0 - timedelta(hours=24), T0 - timedelta(minutes=1), 1) == [earlier]


async def test_pending_refunds_past_a_moment_are_counted(db):
    order = await paid_order(db)
    refunds = SqlRefundRepository(db)
    for refund in (
        new_refund(order, 100, created_at=T0 - timedelta(hours=30)),
        new_refund(order, 150, created_at=T0 - timedelta(hours=24)),  # at the moment: counted
        new_refund(order, 200, created_at=T0 - timedelta(hours=2)),
        new_refund(order, 400, status=RefundStatus.SUCCEEDED, created_at=T0 - timedelta(hours=40)),
        new_refund(order, 450, status=RefundStatus.FAILED, created_at=T0 - timedelta(hours=40)),
    ):
        await refunds.add(refund)
    assert await refunds.count_pending(T0 - timedelta(hours=24)) == 2
    assert await refunds.count_pending(T0) == 3
    assert await refunds.count_pending(T0 - timedelta(hours=48)) == 0


@pytest.mark.parametrize(
    ("sql", "args"),
    [
        (refunds_sql._COUNT_PENDING, (T0,)),
        (refunds_sql._PENDING, (T0 - timedelta(hours=24), T0, 10)),
    ],
    ids=["count_pending", "pending"],
)
async def test_pending_refunds_are_read_through_their_own_index(db, sql, args):
    """The reconciler's two queries reach the pending refunds through the partial index of pending refunds
    (m0013), not by walking every refund's `created_at`. The tables here are tiny, so PostgreSQL is told not to
    scan them whole, as it would not with many refunds."""
    async with db.write_transaction():
        if db.is_postgres:
            await db.fetch("SET LOCAL enable_seqscan = off")
        plan = await db.fetch(f"EXPLAIN {'' if db.is_postgres else 'QUERY PLAN '}{sql}", *args)
    text = " ".join(str(value) for row in plan for value in row.values())
    assert "refunds_pending_idx" in text, text
