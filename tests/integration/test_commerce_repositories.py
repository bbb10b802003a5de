"""The commerce repositories (carts, stock, orders, provider events, outbox, idempotency keys) against real
databases, on both engines."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from market.adapters.db.commerce import (
    CHECKOUT_CLAIM_TIMEOUT,
    IDEMPOTENCY_TAKEOVER_AFTER,
    PiccoloPaymentEventLog,
    SqlCartRepository,
    SqlIdempotencyStore,
    SqlOrderRepository,
    SqlStockRepository,
    SqlWebhookOutbox,
)
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUnitOfWork, PiccoloUserRepository
from market.application.ports import IdempotentReplay
from market.domain.catalog import ItemStatus
from market.domain.errors import InvalidCursor
from market.domain.money import Money
from market.domain.orders import Cart, Order, OrderStatus, PaymentStatus
from market.domain.users import Role, UserStatus
from tests.integration.blocking import locked
from tests.support.database import add_item, add_user, count
from tests.support.factories import T0, TRACEPARENT, new_order


async def stock_of(db, item_id: str) -> int:
    return (await PiccoloItemRepository(db).get(item_id)).stock


async def add_order(db, order: Order) -> Order:
    await SqlOrderRepository(db).add(order)
    return order


# --- stock ------------------------------------------------------------------------------------------------


async def test_a_reservation_takes_stock_only_when_enough_is_left(db):
    stock = SqlStockRepository(db)
    item = await add_item(db, await add_user(db), stock=3)
    assert await stock.reserve(item.id, 2) is True
    assert await stock_of(db, item.id) == 1
    assert await stock.reserve(item.id, 2) is False
    assert await stock_of(db, item.id) == 1, "a refused reservation changes nothing"
    assert await stock.reserve(item.id, 1) is True
    assert await stock.reserve(item.id, 1) is False
    assert await stock_of(db, item.id) == 0
    await stock.release(item.id, 2)
    assert await stock_of(db, item.id) == 2


async def test_reserving_several_lines_takes_each_or_names_the_first_short_one(db):
    stock = SqlStockRepository(db)
    seller = await add_user(db)
    items = sorted([await add_item(db, seller, stock=n) for n in (3, 1, 5)], key=lambda i: i.id)
    wanted = [(item.id, 1) for item in items]
    assert await stock.reserve_all(wanted) is None
    assert [await stock_of(db, item.id) for item in items] == [item.stock - 1 for item in items]
    short = next(item.id for item in items if item.stock == 1)
    async with PiccoloUnitOfWork(db) as work:  # the caller rolls back what was taken of the others
        assert await work.stock.reserve_all(wanted) == short
    assert [await stock_of(db, item.id) for item in items] == [item.stock - 1 for item in items]
    assert await stock.reserve_all([(items[0].id, 99), (items[1].id, 1)]) == items[0].id


async def test_an_archived_item_cannot_be_reserved(db):
    item = await add_item(db, await add_user(db), stock=3, status=ItemStatus.ARCHIVED)
    assert await SqlStockRepository(db).reserve(item.id, 1) is False
    assert await stock_of(db, item.id) == 3


async def test_a_disabled_sellers_item_cannot_be_reserved(db):
    seller = await add_user(db)
    items = [await add_item(db, seller, stock=3) for _ in range(2)]
    await PiccoloUserRepository(db).set_status(seller.id, UserStatus.DISABLED)
    stock = SqlStockRepository(db)
    assert await stock.reserve(items[0].id, 1) is False
    wanted = sorted((item.id, 1) for item in items)
    assert await stock.reserve_all(wanted) == wanted[0][0]
    assert [await stock_of(db, item.id) for item in items] == [3, 3]


async def test_concurrent_reservations_never_take_the_stock_below_zero(db):
    item = await add_item(db, await add_user(db), stock=7)

    async def reserve_in_own_transaction(quantity: int) -> bool:
        async with PiccoloUnitOfWork(db) as work:
            taken = await work.stock.reserve(item.id, quantity)
            await work.commit()
        return taken

    results = await asyncio.gather(*(reserve_in_own_transaction(2) for _ in range(12)))
    assert results.count(True) == 3
    assert await stock_of(db, item.id) == 1


async def test_the_database_refuses_negative_stock_as_a_backstop(db):
    item = await add_item(db, await add_user(db), stock=1)
    with pytest.raises(Exception, match=r"(?i)check"):
        await db.fetch("UPDATE items SET stock = stock - 2 WHERE id = {}", item.id)
    assert await stock_of(db, item.id) == 1


async def test_a_reservation_without_commit_is_rolled_back(db):
    item = await add_item(db, await add_user(db), stock=5)
    async with PiccoloUnitOfWork(db) as work:
        assert await work.stock.reserve(item.id, 4)
    assert await stock_of(db, item.id) == 5


# --- carts ------------------------------------------------------------------------------------------------


async def test_a_cart_reads_its_lines_at_current_prices_in_the_order_they_were_added(db):
    carts = SqlCartRepository(db)
    seller = await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug", price_cents=1999, stock=5)
    hat = await add_item(db, seller, title="Hat", price_cents=500, stock=2)
    await carts.set_quantity(buyer.id, mug.id, 2, T0)
    await carts.set_quantity(buyer.id, hat.id, 1, T0 + timedelta(seconds=1))
    await carts.set_quantity(buyer.id, mug.id, 3, T0 + timedelta(seconds=2))  # keeps its place
    await PiccoloItemRepository(db).update(dataclasses.replace(mug, price=Money(2100, "EUR")))
    cart = await carts.get(buyer.id)
    assert [(c.item_id, c.quantity, c.unit_price.cents, c.stock, c.seller_id) for c in cart.lines] == [
        (mug.id, 3, 2100, 5, seller.id),
        (hat.id, 1, 500, 2, seller.id),
    ]
    assert cart.total.cents == 3 * 2100 + 500
    await carts.set_quantity(buyer.id, mug.id, 0, T0)
    assert [c.item_id for c in (await carts.get(buyer.id)).lines] == [hat.id]
    await carts.remove_ordered_items(buyer.id, str(uuid.uuid4()), [hat.id])
    assert (await carts.get(buyer.id)).lines == ()


async def test_a_cart_line_whose_item_left_the_catalog_is_read_as_unavailable(db):
    carts = SqlCartRepository(db)
    seller, other = await add_user(db), await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug", price_cents=1999)
    hat = await add_item(db, other, title="Hat", price_cents=500)
    cap = await add_item(db, seller, title="Cap", price_cents=700)
    for at, item in enumerate((mug, hat, cap)):
        await carts.set_quantity(buyer.id, item.id, 1, T0 + timedelta(seconds=at))
    await PiccoloItemRepository(db).update(mug.archived(T0))
    await PiccoloUserRepository(db).set_status(other.id, UserStatus.DISABLED)

    cart = await carts.get(buyer.id)
    assert [(c.item_id, c.available) for c in cart.lines] == [
        (mug.id, False),
        (hat.id, False),
        (cap.id, True),
    ]
    assert cart.total == Money(700, "EUR")
    assert await carts.claim_for_checkout(buyer.id, str(uuid.uuid4()), T0) == cart


async def test_carts_are_per_buyer(db):
    carts = SqlCartRepository(db)
    item = await add_item(db, await add_user(db))
    ada, bob = await add_user(db, Role.BUYER), await add_user(db, Role.BUYER)
    await carts.set_quantity(ada.id, item.id, 1, T0)
    assert (await carts.get(bob.id)).lines == ()
    await carts.remove_ordered_items(bob.id, str(uuid.uuid4()), [item.id])
    assert (await carts.get(ada.id)).quantity_of(item.id) == 1


async def test_one_checkout_at_a_time_holds_a_cart_until_released_or_expired(db):
    carts = SqlCartRepository(db)
    buyer = await add_user(db, Role.BUYER)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    empty = Cart(buyer.id)
    assert await carts.claim_for_checkout(buyer.id, first, T0) == empty
    assert await carts.claim_for_checkout(buyer.id, second, T0 + timedelta(seconds=1)) is None
    await carts.release_checkout(buyer.id, second)  # not its claim: no effect
    assert await carts.claim_for_checkout(buyer.id, second, T0 + timedelta(seconds=2)) is None
    await carts.release_checkout(buyer.id, first)
    assert await carts.claim_for_checkout(buyer.id, second, T0 + timedelta(seconds=3)) == empty
    later = T0 + timedelta(seconds=3) + CHECKOUT_CLAIM_TIMEOUT + timedelta(seconds=1)
    assert await carts.claim_for_checkout(buyer.id, first, later) == empty, "a stale claim is taken over"


async def test_a_claim_returns_the_cart_and_removing_the_ordered_items_releases_it(db):
    carts = SqlCartRepository(db)
    seller = await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug", price_cents=1999, stock=5)
    hat = await add_item(db, seller, title="Hat", price_cents=500, stock=2)
    await carts.set_quantity(buyer.id, mug.id, 2, T0)
    await carts.set_quantity(buyer.id, hat.id, 1, T0 + timedelta(seconds=1))
    order_id = str(uuid.uuid4())
    claimed = await carts.claim_for_checkout(buyer.id, order_id, T0 + timedelta(seconds=2))
    assert claimed == await carts.get(buyer.id)
    assert [(c.item_id, c.quantity, c.unit_price.cents, c.stock) for c in claimed.lines] == [
        (mug.id, 2, 1999, 5),
        (hat.id, 1, 500, 2),
    ]
    await carts.remove_ordered_items(buyer.id, order_id, [mug.id])
    assert [c.item_id for c in (await carts.get(buyer.id)).lines] == [hat.id]
    assert await carts.claim_for_checkout(buyer.id, str(uuid.uuid4()), T0 + timedelta(seconds=3)) is not None


async def _claim_waiting(db) -> None:
    """Until the claim waits for a lock: on PostgreSQL as pg_stat_activity shows it; SQLite's claim waits at
    BEGIN IMMEDIATE for the one writer, which this cannot see (a pause lets it start)."""
    if not db.is_postgres:
        await asyncio.sleep(0.3)
        return
    for _ in range(500):
        # Called inside the cart change's transaction, where PostgreSQL keeps the first snapshot of its
        # activity statistics unless told to drop it.
        await db.fetch("SELECT pg_stat_clear_snapshot()")
        rows = await db.fetch(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if rows[0]["n"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the claim never waited for the cart change's lock")


async def _claim_behind(
    db: Any, carts: SqlCartRepository, buyer_id: str, write: Callable[[], Awaitable[None]], at: datetime
) -> Cart | None:
    """A checkout's claim of the buyer's cart that starts while `write` runs in an open transaction, and so waits
    for it to commit."""
    writing = asyncio.Event()

    async def writer() -> None:
        async with db.write_transaction():
            await write()
            writing.set()
            await _claim_waiting(db)

    async def claim() -> Cart | None:
        await writing.wait()
        async with db.write_transaction():
            return await carts.claim_for_checkout(buyer_id, str(uuid.uuid4()), at)

    _, claimed = await asyncio.gather(writer(), claim())
    return claimed


async def test_a_claim_that_waited_for_a_cart_change_returns_the_cart_as_changed(db):
    """The claim waits for the cart row's lock; the change it waited for is in the cart it returns (on
    PostgreSQL the claim reads the lines in the same statement, whose snapshot predates the wait)."""
    carts = SqlCartRepository(db)
    seller = await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug", stock=5)
    hat = await add_item(db, seller, title="Hat", stock=5)
    await carts.set_quantity(buyer.id, mug.id, 1, T0)
    changing, changed = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with db.write_transaction():
            await carts.set_quantity(buyer.id, mug.id, 3, T0 + timedelta(seconds=1))
            await carts.set_quantity(buyer.id, hat.id, 1, T0 + timedelta(seconds=1))
            changing.set()
            await _claim_waiting(db)
        changed.set()

    async def claim() -> Cart | None:
        await changing.wait()
        async with db.write_transaction():
            return await carts.claim_for_checkout(buyer.id, str(uuid.uuid4()), T0 + timedelta(seconds=2))

    _, claimed = await asyncio.gather(change(), claim())
    assert changed.is_set()
    assert claimed is not None
    assert [(c.item_id, c.quantity) for c in claimed.lines] == [(mug.id, 3), (hat.id, 1)]


# --- orders -----------------------------------------------------------------------------------------------


async def test_an_order_with_its_lines_and_payment_is_read_back_as_stored(db):
    seller, other_seller = await add_user(db), await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug ☕", price_cents=1999)
    hat = await add_item(db, other_seller, title="Hat", price_cents=500)
    order = await add_order(
        db, new_order(buyer, [(mug, 2), (hat, 1)], created_at=T0 + timedelta(microseconds=7))
    )
    got = await SqlOrderRepository(db).get(order.id)
    assert got == order
    assert got.traceparent == TRACEPARENT
    assert got.seller_ids == {seller.id, other_seller.id}
    assert await SqlOrderRepository(db).get(order.id.upper()) == order
    assert (await count(db, "order_lines"), await count(db, "payments")) == (2, 1)


@pytest.mark.parametrize("bad_id", ["", "42", "not-a-uuid", "'; DROP TABLE orders; --"])
async def test_a_malformed_or_unknown_order_id_gives_none(db, bad_id):
    orders = SqlOrderRepository(db)
    assert await orders.get(bad_id) is None
    assert await orders.get(str(uuid.uuid4())) is None


async def test_saving_a_status_persists_the_order_and_payment_fields(db):
    orders = SqlOrderRepository(db)
    buyer = await add_user(db, Role.BUYER)
    order = await add_order(db, new_order(buyer, [(await add_item(db, await add_user(db)), 1)]))
    later = T0 + timedelta(minutes=5)
    paid = dataclasses.replace(
        order.transition(OrderStatus.PAID, later),
        payment=dataclasses.replace(
            order.payment, status=PaymentStatus.SUCCEEDED, provider_payment_id="ch_1"
        ),
    )
    async with PiccoloUnitOfWork(db) as work:
        locked = await work.orders.get(order.id, for_update=True)
        assert locked == order
        await work.orders.save_status(paid)
        await work.commit()
    assert await orders.get(order.id) == paid
    failed = dataclasses.replace(
        order.transition(OrderStatus.PAYMENT_FAILED, later),
        payment=dataclasses.replace(
            order.payment, status=PaymentStatus.DECLINED, failure_reason="card_declined"
        ),
    )
    await orders.save_status(failed)
    assert (await orders.get(order.id)).payment.failure_reason == "card_declined"


async def test_locking_a_placed_order_reads_back_its_current_state_as_get_does(db):
    orders = SqlOrderRepository(db)
    buyer = await add_user(db, Role.BUYER)
    seller = await add_user(db)
    items = [await add_item(db, seller, title=title) for title in ("b", "Z", "a", "é")]
    placed = dataclasses.replace(
        new_order(buyer, [(item, 1) for item in items]),
        lines=tuple(line for item in items for line in new_order(buyer, [(item, 1)]).lines),
    )
    await add_order(db, placed)
    assert [line.title for line in placed.lines] == ["b", "Z", "a", "é"]  # the cart's order
    later = T0 + timedelta(minutes=5)
    paid = dataclasses.replace(
        placed.transition(OrderStatus.PAID, later),
        payment=dataclasses.replace(
            placed.payment, status=PaymentStatus.SUCCEEDED, provider_payment_id="ch_9"
        ),
    )
    await orders.save_status(paid)  # a webhook settled it meanwhile
    async with PiccoloUnitOfWork(db) as work:
        current = await work.orders.lock_current(placed)
        assert current == await work.orders.get(placed.id, for_update=True)
        await work.commit()
    assert current.status is OrderStatus.PAID and current.payment.provider_payment_id == "ch_9"
    assert [line.title for line in current.lines] == ["Z", "a", "b", "é"]
    missing = dataclasses.replace(placed, id=str(uuid.uuid4()))
    assert await orders.lock_current(missing) is None


async def test_unsettled_orders_are_the_waiting_ones_not_changed_recently(db):
    orders = SqlOrderRepository(db)
    buyer = await add_user(db, Role.BUYER)
    item = await add_item(db, await add_user(db))
    statuses = [
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.PROCESSING,
        OrderStatus.PAID,
        OrderStatus.PAYMENT_FAILED,
        OrderStatus.REFUNDED,
    ]
    placed = [
        await add_order(db, new_order(buyer, [(item, 1)], status=s, created_at=T0 + timedelta(minutes=i)))
        for i, s in enumerate(statuses)
    ]
    recent = await add_order(db, new_order(buyer, [(item, 1)], created_at=T0 + timedelta(hours=1)))
    waiting = await orders.unsettled(T0 + timedelta(minutes=30), 100)
    assert [o.id for o in waiting] == [placed[0].id, placed[1].id]
    assert recent.id not in [o.id for o in await orders.unsettled(T0 + timedelta(minutes=30), 100)]
    assert [o.id for o in await orders.unsettled(T0 + timedelta(minutes=30), 1)] == [placed[0].id]


async def _walk(orders, user, limit):
    seen, cursor, pages = [], None, 0
    while True:
        page = await orders.list_visible_to(user, limit, cursor)
        assert len(page.items) <= limit
        seen += [o.id for o in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return seen, pages


async def test_order_lists_show_each_role_its_orders_newest_first_page_by_page(db):
    orders = SqlOrderRepository(db)
    ada, bob = await add_user(db, Role.BUYER), await add_user(db, Role.BUYER)
    potter, hatter = await add_user(db), await add_user(db)
    admin = await add_user(db, Role.ADMIN)
    mug, hat = await add_item(db, potter), await add_item(db, hatter)
    same_instant = T0 + timedelta(hours=1)  # ties are broken by id, and no page loses or repeats them
    ada_orders = [
        await add_order(db, new_order(ada, [(mug, 1)], created_at=T0)),
        await add_order(db, new_order(ada, [(mug, 1), (hat, 1)], created_at=same_instant)),
        await add_order(db, new_order(ada, [(hat, 2)], created_at=same_instant)),
        await add_order(db, new_order(ada, [(mug, 3)], created_at=same_instant)),
        await add_order(db, new_order(ada, [(hat, 1)], created_at=T0 + timedelta(hours=2))),
    ]
    bob_orders = [await add_order(db, new_order(bob, [(mug, 1)], created_at=T0 + timedelta(minutes=30)))]

    def newest_first(some):
        return [o.id for o in sorted(some, key=lambda o: (o.created_at, o.id), reverse=True)]

    everything = ada_orders + bob_orders
    expected = {
        ada.id: newest_first(ada_orders),
        bob.id: newest_first(bob_orders),
        potter.id: newest_first([o for o in everything if potter.id in o.seller_ids]),
        hatter.id: newest_first([o for o in everything if hatter.id in o.seller_ids]),
        admin.id: newest_first(everything),
    }
    for user in (ada, bob, potter, hatter, admin):
        assert [o.id for o in (await orders.list_visible_to(user, 100, None)).items] == expected[user.id]
        for limit in (1, 2, 4):
            seen, pages = await _walk(orders, user, limit)
            assert seen == expected[user.id], (user.role, limit)
            assert pages == max(1, -(-len(seen) // limit)), "no empty last page"
    first = await orders.list_visible_to(ada, 2, None)
    assert first.items[0] == ada_orders[4]


async def test_a_cursor_from_another_list_or_made_up_is_refused(db):
    orders = SqlOrderRepository(db)
    buyer, seller = await add_user(db, Role.BUYER), await add_user(db)
    item = await add_item(db, seller)
    for i in range(3):
        await add_order(db, new_order(buyer, [(item, 1)], created_at=T0 + timedelta(minutes=i)))
    buyer_cursor = (await orders.list_visible_to(buyer, 1, None)).next_cursor
    assert buyer_cursor is not None
    with pytest.raises(InvalidCursor):
        await orders.list_visible_to(seller, 1, buyer_cursor)
    with pytest.raises(InvalidCursor):
        await orders.list_visible_to(buyer, 1, "not-a-cursor")


# --- provider events and the outbox -----------------------------------------------------------------------


async def test_a_provider_event_is_recorded_once(db):
    log = PiccoloPaymentEventLog(db)
    order_id = str(uuid.uuid4())
    assert await log.record("evt_1", "payment.succeeded", order_id, "applied", T0) is True
    assert await log.record("evt_1", "payment.succeeded", order_id, "applied", T0) is False
    assert await log.record("evt_1", "payment.failed", None, "ignored", T0) is False
    assert await log.record("evt_2", "payment.failed", None, "unknown_order", T0) is True
    rows = await db.fetch("SELECT event_id, outcome FROM payment_events ORDER BY event_id")
    assert [(r["event_id"], r["outcome"]) for r in rows] == [("evt_1", "applied"), ("evt_2", "unknown_order")]


async def test_a_duplicate_event_in_a_unit_of_work_leaves_it_usable(db):
    await PiccoloPaymentEventLog(db).record("evt_1", "payment.succeeded", None, "applied", T0)
    async with PiccoloUnitOfWork(db) as work:
        assert await work.payment_events.record("evt_1", "payment.succeeded", None, "applied", T0) is False
        assert await work.payment_events.record("evt_2", "payment.succeeded", None, "applied", T0) is True
        await work.commit()
    assert await count(db, "payment_events") == 2


async def test_order_paid_is_queued_for_each_seller_with_an_enabled_endpoint(db):
    potter, hatter, quiet = await add_user(db), await add_user(db), await add_user(db)
    for seller, disabled in ((potter, None), (hatter, T0)):
        await db.fetch(
            "INSERT INTO seller_webhooks (seller_id, url, secret, disabled_at, created_at, updated_at)"
            " VALUES ({}, 'https://example.com/hook', 'whsec_x', {}, {}, {})",
            seller.id,
            disabled,
            T0,
            T0,
        )
    buyer = await add_user(db, Role.BUYER)
    items = [await add_item(db, s, price_cents=100 * (n + 1)) for n, s in enumerate((potter, hatter, quiet))]
    order = new_order(buyer, [(i, 2) for i in items]).transition(OrderStatus.PAID, T0)
    await add_order(db, order)
    assert await SqlWebhookOutbox(db).enqueue_order_paid(order, T0) == 1
    rows = await db.fetch(
        "SELECT seller_id, event_type, status, traceparent, payload FROM webhook_deliveries"
    )
    assert len(rows) == 1
    assert (str(rows[0]["seller_id"]), rows[0]["event_type"], rows[0]["status"]) == (
        potter.id,
        "order.paid",
        "pending",
    )
    assert rows[0]["traceparent"] == TRACEPARENT
    assert '"seller_total_cents":200' in rows[0]["payload"]


# --- idempotency keys -------------------------------------------------------------------------------------


async def test_an_idempotency_key_is_claimed_then_replayed(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    assert await keys.begin(user, "k1", "hash-a", T0) == "new"
    assert await keys.begin(user, "k1", "hash-a", T0 + timedelta(seconds=1)) == "in_progress"
    body = b'{"id":"order-1","status":"paid","note":"\xc3\xa9"}'
    await keys.complete(user, "k1", 201, body, T0 + timedelta(seconds=2))
    replay = await keys.begin(user, "k1", "hash-a", T0 + timedelta(seconds=3))
    assert replay == IdempotentReplay(status=201, body=body)


async def test_an_idempotency_key_with_another_body_is_a_mismatch(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    assert await keys.begin(user, "k1", "hash-a", T0) == "new"
    assert await keys.begin(user, "k1", "hash-b", T0) == "mismatch"
    await keys.complete(user, "k1", 402, b"{}", T0)
    assert await keys.begin(user, "k1", "hash-b", T0) == "mismatch"


async def test_idempotency_keys_are_scoped_per_user(db):
    keys = SqlIdempotencyStore(db)
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    assert await keys.begin(ada, "shared", "hash-a", T0) == "new"
    await keys.complete(ada, "shared", 201, b'{"id":"ada-order"}', T0)
    assert await keys.begin(bob, "shared", "hash-a", T0) == "new"


async def test_an_abandoned_claim_may_be_retried_but_a_completed_one_stays(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    assert await keys.begin(user, "k1", "hash-a", T0) == "new"
    await keys.abandon(user, "k1")
    assert await keys.begin(user, "k1", "hash-b", T0) == "new"
    await keys.complete(user, "k1", 201, b"{}", T0)
    await keys.abandon(user, "k1")
    assert await keys.begin(user, "k1", "hash-b", T0) == IdempotentReplay(201, b"{}")


async def test_an_in_progress_claim_whose_request_died_is_taken_over_once(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    start = T0 + timedelta(microseconds=250_000)
    assert await keys.begin(user, "k1", "hash-a", start) == "new"
    assert await keys.begin(user, "k1", "hash-a", start + IDEMPOTENCY_TAKEOVER_AFTER) == "in_progress"
    later = start + IDEMPOTENCY_TAKEOVER_AFTER + timedelta(seconds=1)
    assert await keys.begin(user, "k1", "hash-a", later) == "new"
    assert await keys.begin(user, "k1", "hash-a", later) == "in_progress", "only one request takes it over"
    assert await keys.begin(user, "k1", "hash-a", later + timedelta(seconds=1)) == "in_progress"


async def test_a_checkouts_answer_is_stored_once_the_database_is_free_again(db, database_url):
    """The order is placed by then: a busy database must not turn its answer into a 503 and leave the key in
    progress (its retries would get 409, and the takeover would run the checkout again)."""
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    assert await keys.begin(user, "k1", "hash-a", T0) == "new"
    with locked(database_url, "idempotency_keys"):
        storing = asyncio.create_task(keys.complete(user, "k1", 201, b'{"id":"o1"}', T0))
        await asyncio.sleep(3.0)  # past the lock timeout (2 s): the first try has given up
        assert not storing.done()
    await asyncio.wait_for(storing, 10)
    assert await keys.begin(user, "k1", "hash-a", T0) == IdempotentReplay(201, b'{"id":"o1"}')


async def test_concurrent_claims_of_one_key_let_exactly_one_request_through(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    results = await asyncio.gather(*(keys.begin(user, "k1", "hash-a", T0) for _ in range(10)))
    assert sorted(results) == ["in_progress"] * 9 + ["new"]


async def test_old_idempotency_keys_are_purged(db):
    keys = SqlIdempotencyStore(db)
    user = str(uuid.uuid4())
    await keys.begin(user, "old", "h", T0)
    await keys.begin(user, "new", "h", T0 + timedelta(days=2))
    assert await keys.purge(T0 + timedelta(days=1)) == 1
    assert await keys.begin(user, "old", "other", T0 + timedelta(days=2)) == "new"
    assert await keys.begin(user, "new", "other", T0 + timedelta(days=2)) == "mismatch"


async def test_a_claim_that_waited_for_a_lines_removal_does_not_order_the_removed_line(db):
    """A line removed while a checkout claims the cart is not in the cart the claim returns: the removal writes
    the cart row, so the claim waits for it and reads the lines as they are after it."""
    carts = SqlCartRepository(db)
    seller = await add_user(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, title="Mug", stock=5)
    hat = await add_item(db, seller, title="Hat", stock=5)
    await carts.set_quantity(buyer.id, mug.id, 1, T0)
    await carts.set_quantity(buyer.id, hat.id, 1, T0)

    async def remove() -> None:
        await carts.set_quantity(buyer.id, mug.id, 0, T0 + timedelta(seconds=1))

    claimed = await _claim_behind(db, carts, buyer.id, remove, T0 + timedelta(seconds=2))
    assert claimed is not None
    assert [(c.item_id, c.quantity) for c in claimed.lines] == [(hat.id, 1)]


async def test_a_claim_that_waited_for_a_checkouts_release_does_not_see_the_ordered_lines(db):
    """The race of two checkouts of one cart: the second claims as the first releases the cart, having
    emptied it of what it ordered. The second must find the cart empty, not order the same lines again."""
    carts = SqlCartRepository(db)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, await add_user(db), title="Mug", stock=5)
    await carts.set_quantity(buyer.id, mug.id, 1, T0)
    first = str(uuid.uuid4())
    assert (await carts.claim_for_checkout(buyer.id, first, T0)).quantity_of(mug.id) == 1

    async def release() -> None:
        await carts.remove_ordered_items(buyer.id, first, [mug.id])

    claimed = await _claim_behind(db, carts, buyer.id, release, T0 + timedelta(seconds=1))
    assert claimed == Cart(buyer.id)
