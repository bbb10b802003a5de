"""Repositories for carts, stock, orders, provider events, the webhook outbox and idempotency keys.

Plain SQL through the Piccolo engine: the same statements run on PostgreSQL and SQLite (ON CONFLICT and
RETURNING exist on both), and every stock change is one conditional UPDATE, so concurrency cannot oversell.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from market.application.ports import IdempotentReplay, Page
from market.domain.orders import (
    GATEWAY_UNAVAILABLE,
    Cart,
    CartLine,
    Order,
    OrderFilter,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentStatus,
)
from market.domain.users import Role, User

from .cursors import decode_keyset_cursor, encode_keyset_cursor
from .database import Database
from .rows import parse_id

CHECKOUT_CLAIM_TIMEOUT = timedelta(minutes=15)  # a crashed checkout must not lock a cart forever
IDEMPOTENCY_TAKEOVER_AFTER = timedelta(minutes=5)  # an in-progress key whose request died may be reused


class PiccoloCartRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, buyer_id: str) -> Cart:
        rows = await self._db.fetch(
            "SELECT cl.item_id, i.title, cl.quantity, i.price_cents, i.currency, i.seller_id, i.stock"
            " FROM cart_lines cl JOIN items i ON i.id = cl.item_id"
            " WHERE cl.buyer_id = {} ORDER BY cl.added_at, cl.item_id",
            buyer_id,
        )
        return Cart(
            buyer_id=buyer_id,
            lines=tuple(
                CartLine(
                    item_id=str(r["item_id"]),
                    title=r["title"],
                    quantity=r["quantity"],
                    unit_price_cents=r["price_cents"],
                    currency=r["currency"],
                    seller_id=str(r["seller_id"]),
                    stock=r["stock"],
                )
                for r in rows
            ),
        )

    async def set_quantity(self, buyer_id: str, item_id: str, quantity: int, now: datetime) -> None:
        if quantity == 0:
            await self._db.fetch(
                "DELETE FROM cart_lines WHERE buyer_id = {} AND item_id = {}", buyer_id, item_id
            )
            return
        await self._ensure_cart(buyer_id, now)
        await self._db.fetch(
            "INSERT INTO cart_lines (buyer_id, item_id, quantity, added_at) VALUES ({}, {}, {}, {})"
            " ON CONFLICT (buyer_id, item_id) DO UPDATE SET quantity = excluded.quantity",
            buyer_id,
            item_id,
            quantity,
            now,
        )

    async def remove_items(self, buyer_id: str, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            await self._db.fetch(
                "DELETE FROM cart_lines WHERE buyer_id = {} AND item_id = {}", buyer_id, item_id
            )

    async def claim_for_checkout(self, buyer_id: str, order_id: str, now: datetime) -> bool:
        await self._ensure_cart(buyer_id, now)
        rows = await self._db.fetch(
            "UPDATE carts SET checkout_order_id = {}, checkout_started_at = {}"
            " WHERE buyer_id = {} AND (checkout_order_id IS NULL OR checkout_started_at < {}) RETURNING buyer_id",
            order_id,
            now,
            buyer_id,
            now - CHECKOUT_CLAIM_TIMEOUT,
        )
        return bool(rows)

    async def release_checkout(self, buyer_id: str, order_id: str) -> None:
        await self._db.fetch(
            "UPDATE carts SET checkout_order_id = NULL, checkout_started_at = NULL"
            " WHERE buyer_id = {} AND checkout_order_id = {}",
            buyer_id,
            order_id,
        )

    async def _ensure_cart(self, buyer_id: str, now: datetime) -> None:
        await self._db.fetch(
            "INSERT INTO carts (buyer_id, updated_at) VALUES ({}, {})"
            " ON CONFLICT (buyer_id) DO UPDATE SET updated_at = excluded.updated_at",
            buyer_id,
            now,
        )


class PiccoloStockRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, item_id: str, quantity: int) -> bool:
        rows = await self._db.fetch(
            "UPDATE items SET stock = stock - {} WHERE id = {} AND status = 'active' AND stock >= {} RETURNING stock",
            quantity,
            item_id,
            quantity,
        )
        return bool(rows)

    async def release(self, item_id: str, quantity: int) -> None:
        await self._db.fetch("UPDATE items SET stock = stock + {} WHERE id = {}", quantity, item_id)


_ORDER_COLUMNS = (
    "o.id, o.buyer_id, o.status, o.total_cents, o.currency, o.traceparent, o.created_at, o.updated_at"
)


class PiccoloOrderRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, order: Order) -> None:
        assert order.payment is not None
        await self._db.fetch(
            "INSERT INTO orders (id, buyer_id, status, total_cents, currency, traceparent, created_at, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            order.id,
            order.buyer_id,
            order.status.value,
            order.total_cents,
            order.currency,
            order.traceparent,
            order.created_at,
            order.updated_at,
        )
        for line in order.lines:
            await self._db.fetch(
                "INSERT INTO order_lines (order_id, item_id, seller_id, title, quantity, unit_price_cents)"
                " VALUES ({}, {}, {}, {}, {}, {})",
                order.id,
                line.item_id,
                line.seller_id,
                line.title,
                line.quantity,
                line.unit_price_cents,
            )
        p = order.payment
        await self._db.fetch(
            "INSERT INTO payments (id, order_id, status, method, amount_cents, currency, provider,"
            " provider_payment_id, failure_reason, created_at, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            p.id,
            order.id,
            p.status.value,
            p.method,
            p.amount_cents,
            p.currency,
            p.provider,
            p.provider_payment_id,
            p.failure_reason,
            order.created_at,
            order.updated_at,
        )

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        canonical = parse_id(order_id)
        if canonical is None:
            return None
        lock = " FOR UPDATE" if for_update and self._db.is_postgres else ""
        rows = await self._db.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.id = {{}}{lock}", canonical
        )
        if not rows:
            return None
        return (await self._hydrate(rows))[0]

    async def save_status(self, order: Order) -> None:
        await self._db.fetch(
            "UPDATE orders SET status = {}, updated_at = {} WHERE id = {}",
            order.status.value,
            order.updated_at,
            order.id,
        )
        if order.payment is not None:
            p = order.payment
            await self._db.fetch(
                "UPDATE payments SET status = {}, provider_payment_id = {}, failure_reason = {}, updated_at = {}"
                " WHERE id = {}",
                p.status.value,
                p.provider_payment_id,
                p.failure_reason,
                order.updated_at,
                p.id,
            )

    async def list_visible_to(
        self, user: User, limit: int, cursor: str | None, order_filter: OrderFilter | None = None
    ) -> Page[Order]:
        f = order_filter or OrderFilter()
        scope = f"orders:{user.role.value}"
        if f != OrderFilter():  # the unfiltered list keeps the cursors it always issued
            digest = hashlib.sha256(repr((f.status, f.buyer_id, f.seller_id, f.since, f.until)).encode())
            scope += ":" + digest.hexdigest()[:16]
        position = decode_keyset_cursor(cursor, scope)
        where: list[str] = []
        args: list[Any] = []
        if user.role is Role.BUYER:
            where.append("o.buyer_id = {}")
            args.append(user.id)
        elif user.role is Role.SELLER:
            where.append("o.id IN (SELECT ol.order_id FROM order_lines ol WHERE ol.seller_id = {})")
            args.append(user.id)
        wanted = {"buyer": f.buyer_id, "seller": f.seller_id}
        canonical = {who: parse_id(value) for who, value in wanted.items() if value is not None}
        if None in canonical.values():  # not an id at all: nobody's orders
            return Page(items=[], next_cursor=None)
        if "buyer" in canonical:
            where.append("o.buyer_id = {}")
            args.append(canonical["buyer"])
        if "seller" in canonical:
            where.append("o.id IN (SELECT ol.order_id FROM order_lines ol WHERE ol.seller_id = {})")
            args.append(canonical["seller"])
        if f.status is not None:
            where.append("o.status = {}")
            args.append(f.status.value)
        if f.since is not None:
            where.append("o.created_at >= {}")
            args.append(f.since)
        if f.until is not None:
            where.append("o.created_at < {}")
            args.append(f.until)
        if position is not None:
            where.append("(o.created_at, o.id) < ({}, {})")
            args += list(position)
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders o"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._db.fetch(sql + " ORDER BY o.created_at DESC, o.id DESC LIMIT {}", *args, limit + 1)
        orders = await self._hydrate(rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = orders[-1]
            next_cursor = encode_keyset_cursor(scope, last.created_at, last.id)
        return Page(items=orders, next_cursor=next_cursor)

    async def unsettled(self, updated_before: datetime, limit: int) -> Sequence[Order]:
        rows = await self._db.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.status IN ('pending_payment', 'processing')"
            " AND (o.updated_at < {} OR o.id IN (SELECT p.order_id FROM payments p WHERE p.failure_reason = {}))"
            " ORDER BY o.updated_at LIMIT {}",
            updated_before,
            GATEWAY_UNAVAILABLE,
            limit,
        )
        return await self._hydrate(rows)

    async def _hydrate(self, rows: Sequence[Mapping[str, Any]]) -> list[Order]:
        if not rows:
            return []
        ids = [str(r["id"]) for r in rows]
        marks = ", ".join("{}" for _ in ids)
        lines: dict[str, list[OrderLine]] = {i: [] for i in ids}
        for r in await self._db.fetch(
            "SELECT order_id, item_id, seller_id, title, quantity, unit_price_cents FROM order_lines"
            f" WHERE order_id IN ({marks}) ORDER BY title, item_id",
            *ids,
        ):
            lines[str(r["order_id"])].append(
                OrderLine(
                    str(r["item_id"]), str(r["seller_id"]), r["title"], r["quantity"], r["unit_price_cents"]
                )
            )
        payments: dict[str, Payment] = {}
        for r in await self._db.fetch(
            "SELECT id, order_id, status, method, amount_cents, currency, provider, provider_payment_id,"
            f" failure_reason FROM payments WHERE order_id IN ({marks})",
            *ids,
        ):
            payments[str(r["order_id"])] = Payment(
                id=str(r["id"]),
                order_id=str(r["order_id"]),
                status=PaymentStatus(r["status"]),
                method=r["method"],
                amount_cents=r["amount_cents"],
                currency=r["currency"],
                provider=r["provider"],
                provider_payment_id=r["provider_payment_id"],
                failure_reason=r["failure_reason"],
            )
        return [
            Order(
                id=str(r["id"]),
                buyer_id=str(r["buyer_id"]),
                status=OrderStatus(r["status"]),
                lines=tuple(lines[str(r["id"])]),
                total_cents=r["total_cents"],
                currency=r["currency"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                payment=payments.get(str(r["id"])),
                traceparent=r["traceparent"],
            )
            for r in rows
        ]


class PiccoloPaymentEventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, event_id: str, event_type: str, order_id: str | None, outcome: str, now: datetime
    ) -> bool:
        rows = await self._db.fetch(
            "INSERT INTO payment_events (event_id, type, order_id, outcome, received_at) VALUES ({}, {}, {}, {}, {})"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            event_id,
            event_type,
            parse_id(order_id) if order_id else None,
            outcome,
            now,
        )
        return bool(rows)


class PiccoloWebhookOutbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue_order_paid(self, order: Order, now: datetime) -> int:
        queued = 0
        for seller_id in sorted(order.seller_ids):
            endpoint = await self._db.fetch(
                "SELECT seller_id FROM seller_webhooks WHERE seller_id = {} AND disabled_at IS NULL",
                seller_id,
            )
            if not endpoint:
                continue
            lines = [line for line in order.lines if line.seller_id == seller_id]
            payload = {
                "type": "order.paid",
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": {
                    "order_id": order.id,
                    "status": order.status.value,
                    "currency": order.currency,
                    "seller_total_cents": sum(line.line_total_cents for line in lines),
                    "lines": [
                        {
                            "item_id": line.item_id,
                            "title": line.title,
                            "quantity": line.quantity,
                            "unit_price_cents": line.unit_price_cents,
                        }
                        for line in lines
                    ],
                },
            }
            await self._db.fetch(
                "INSERT INTO webhook_deliveries (id, seller_id, event_type, payload, status, attempts,"
                " next_attempt_at, traceparent, created_at, updated_at)"
                " VALUES ({}, {}, 'order.paid', {}, 'pending', 0, {}, {}, {}, {})",
                str(uuid.uuid4()),
                seller_id,
                json.dumps(payload, separators=(",", ":")),
                now,
                order.traceparent,
                now,
                now,
            )
            queued += 1
        return queued


class PiccoloIdempotencyStore:
    """Keys live in the database, so they hold across restarts and workers. Each call is its own
    statement (autocommit): a claim must be visible to concurrent requests at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(self, user_id: str, key: str, request_hash: str, now: datetime) -> IdempotentReplay | str:
        claimed = await self._db.fetch(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, state, created_at, updated_at)"
            " VALUES ({}, {}, {}, 'in_progress', {}, {}) ON CONFLICT (user_id, key) DO NOTHING RETURNING key",
            user_id,
            key,
            request_hash,
            now,
            now,
        )
        if claimed:
            return "new"
        rows = await self._db.fetch(
            "SELECT request_hash, state, response_status, response_body, updated_at FROM idempotency_keys"
            " WHERE user_id = {} AND key = {}",
            user_id,
            key,
        )
        if not rows:  # abandoned between our INSERT and SELECT: try once more
            return await self.begin(user_id, key, request_hash, now)
        row = rows[0]
        if row["request_hash"] != request_hash:
            return "mismatch"
        if row["state"] == "completed":
            return IdempotentReplay(status=row["response_status"], body=row["response_body"].encode())
        if row["updated_at"] < now - IDEMPOTENCY_TAKEOVER_AFTER:
            taken = await self._db.fetch(
                "UPDATE idempotency_keys SET updated_at = {} WHERE user_id = {} AND key = {}"
                " AND state = 'in_progress' AND updated_at = {} RETURNING key",
                now,
                user_id,
                key,
                row["updated_at"],
            )
            if taken:
                return "new"
        return "in_progress"

    async def complete(self, user_id: str, key: str, status: int, body: bytes, now: datetime) -> None:
        await self._db.fetch(
            "UPDATE idempotency_keys SET state = 'completed', response_status = {}, response_body = {},"
            " updated_at = {} WHERE user_id = {} AND key = {}",
            status,
            body.decode(),
            now,
            user_id,
            key,
        )

    async def abandon(self, user_id: str, key: str) -> None:
        await self._db.fetch(
            "DELETE FROM idempotency_keys WHERE user_id = {} AND key = {} AND state = 'in_progress'",
            user_id,
            key,
        )

    async def purge(self, older_than: datetime) -> int:
        rows = await self._db.fetch(
            "DELETE FROM idempotency_keys WHERE created_at < {} RETURNING key", older_than
        )
        return len(rows)
