"""Repositories for carts, stock, orders, provider events, the webhook outbox and idempotency keys.

Checkout runs every statement here but the provider-event log's (a dozen per order), so they are written SQL:
named constants next to their repository, built from the Table classes' column lists (tables.py), run through
the Piccolo engine. Piccolo's query builder costs about 0.2-0.3 ms of CPU more per statement (README, "Data
layer"; benchmarks/query_paths.py). The same statements run on PostgreSQL and SQLite (ON CONFLICT and
RETURNING exist on both), and every stock change is one conditional UPDATE, so concurrency cannot oversell.
Statements off the hot path use the query builder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from market.application.ports import IdempotentReplay, Page
from market.domain.money import Money
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
from market.domain.refunds import Refund
from market.domain.users import Role, User
from market.domain.validation import parse_id

from .cursors import decode_keyset_cursor, encode_keyset_cursor
from .database import Database
from .errors import database_unavailable
from .rows import on_sale
from .tables import (
    CartLineRow,
    IdempotencyKeyRow,
    OrderLineRow,
    OrderRow,
    PaymentEventRow,
    PaymentRow,
    WebhookDeliveryRow,
    columns,
    insert_sql,
    row_values,
    select_list,
)

CHECKOUT_CLAIM_TIMEOUT = timedelta(minutes=15)  # a crashed checkout must not lock a cart forever
IDEMPOTENCY_TAKEOVER_AFTER = timedelta(minutes=5)  # an in-progress key whose request died may be reused
_COMPLETE_RETRY_PAUSES_S = (0.05, 0.2, 0.5, 1.0, 2.0)
"""Pauses between tries to store a checkout's answer while the database is busy (about 4 s, beside each try's
own wait for the lock)."""


_CART_LINE_COLUMNS = (
    "cl.item_id, i.title, cl.quantity, i.price_cents, i.currency, i.seller_id, i.stock,"
    f" ({on_sale('i')}) AS available"
)
_CART_LINES = (
    f"SELECT {_CART_LINE_COLUMNS}"
    " FROM cart_lines cl JOIN items i ON i.id = cl.item_id"
    " WHERE cl.buyer_id = {} ORDER BY cl.added_at, cl.item_id"
)
_DELETE_CART_LINE = "DELETE FROM cart_lines WHERE buyer_id = {} AND item_id = {}"
_SET_CART_LINE = insert_sql(
    CartLineRow, suffix="ON CONFLICT (buyer_id, item_id) DO UPDATE SET quantity = excluded.quantity"
)
# The cart row is created if missing and claimed in one statement: a cart held by another checkout (whose
# claim has not timed out) is left as it is and nothing is returned (the caller rolls back).
_CLAIM_CART = (
    "INSERT INTO carts (buyer_id, updated_at, checkout_order_id, checkout_started_at) VALUES ({}, {}, {}, {})"
    " ON CONFLICT (buyer_id) DO UPDATE SET updated_at = excluded.updated_at,"
    " checkout_order_id = excluded.checkout_order_id, checkout_started_at = excluded.checkout_started_at"
    " WHERE carts.checkout_order_id IS NULL OR carts.checkout_started_at < {} RETURNING buyer_id"
)
# PostgreSQL: the claim and the cart's lines in one statement (one row with NULL item_id for an empty cart).
# Every part of a statement reads the snapshot it started with, even after the claim waited for the lock of a
# cart change or a checkout's release that then committed (both write the cart row): so the claim is made only
# if the cart row is still the version of that snapshot (its xmin), when the lines read are the cart's. No row:
# the cart is held, or it changed since the snapshot; the caller claims and reads apart (_CLAIM_CART).
_CLAIM_AND_READ = (
    "WITH c AS ("
    + _CLAIM_CART.replace(
        " WHERE carts.checkout_order_id IS NULL OR carts.checkout_started_at < {}",
        " WHERE (carts.checkout_order_id IS NULL OR carts.checkout_started_at < {})"
        " AND carts.xmin = (SELECT s.xmin FROM carts s WHERE s.buyer_id = {})",
    )
    + f") SELECT {_CART_LINE_COLUMNS}"
    " FROM c LEFT JOIN cart_lines cl ON cl.buyer_id = c.buyer_id LEFT JOIN items i ON i.id = cl.item_id"
    " ORDER BY cl.added_at, cl.item_id"
)
_RELEASE_CART = (
    "UPDATE carts SET checkout_order_id = NULL, checkout_started_at = NULL"
    " WHERE buyer_id = {} AND checkout_order_id = {}"
)
_TOUCH_CART = (
    "INSERT INTO carts (buyer_id, updated_at) VALUES ({}, {})"
    " ON CONFLICT (buyer_id) DO UPDATE SET updated_at = excluded.updated_at"
)
# PostgreSQL: a cart line set in one statement. The line is inserted from the cart row's upsert, so the cart row
# is locked first (sub-statements otherwise run in no set order), as the checkout's release locks it before
# deleting lines (remove_ordered_items): the two take the same locks in the same order, and cannot deadlock.
_TOUCH_CART_AND_SET_LINE = f"WITH c AS ({_TOUCH_CART} RETURNING buyer_id) " + _SET_CART_LINE.replace(
    " VALUES ({}, ", " SELECT c.buyer_id, ", 1
).replace(") ON CONFLICT", " FROM c ON CONFLICT", 1)
_TOUCH_CART_AND_DELETE_LINE = (
    f"WITH c AS ({_TOUCH_CART} RETURNING buyer_id) "
    "DELETE FROM cart_lines WHERE buyer_id = (SELECT buyer_id FROM c) AND item_id = {}"
)


def _cart(buyer_id: str, rows: Sequence[Mapping[str, Any]]) -> Cart:
    return Cart(
        buyer_id=buyer_id,
        lines=tuple(
            CartLine(
                item_id=str(r["item_id"]),
                title=r["title"],
                quantity=r["quantity"],
                unit_price=Money(r["price_cents"], r["currency"]),
                seller_id=str(r["seller_id"]),
                stock=r["stock"],
                available=bool(r["available"]),  # SQLite answers 0 or 1
            )
            for r in rows
            if r["item_id"] is not None
        ),
    )


class SqlCartRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, buyer_id: str) -> Cart:
        return _cart(buyer_id, await self._db.fetch(_CART_LINES, buyer_id))

    async def hold(self, buyer_id: str, now: datetime) -> None:
        if self._db.is_postgres:  # the cart row is the lock; a new cart has no row to lock otherwise
            await self._ensure_cart(buyer_id, now)

    async def set_quantity(self, buyer_id: str, item_id: str, quantity: int, now: datetime) -> None:
        if quantity == 0:
            # A removal writes the cart row too (on PostgreSQL first, in the same statement): a checkout's claim
            # waiting for it then sees the cart changed and reads the lines again, without the removed one.
            if self._db.is_postgres:
                await self._db.fetch(_TOUCH_CART_AND_DELETE_LINE, buyer_id, now, item_id)
                return
            await self._ensure_cart(buyer_id, now)
            await self._db.fetch(_DELETE_CART_LINE, buyer_id, item_id)
            return
        line = row_values(
            CartLineRow, {"buyer_id": buyer_id, "item_id": item_id, "quantity": quantity, "added_at": now}
        )
        if self._db.is_postgres:  # one statement, the cart row locked before the line (see the SQL's comment)
            await self._db.fetch(_TOUCH_CART_AND_SET_LINE, buyer_id, now, *line[1:])
            return
        await self._ensure_cart(buyer_id, now)
        await self._db.fetch(_SET_CART_LINE, *line)

    async def remove_ordered_items(self, buyer_id: str, order_id: str, item_ids: Sequence[str]) -> None:
        """One statement on PostgreSQL, two on SQLite."""
        marks = ", ".join("{}" for _ in item_ids)
        delete = f"DELETE FROM cart_lines WHERE buyer_id = {{}} AND item_id IN ({marks})"
        if not item_ids:
            await self.release_checkout(buyer_id, order_id)
        elif self._db.is_postgres:
            # The release first: the DELETE's condition reads it (an InitPlan, run before any line is
            # deleted), and the cart row is locked before its lines, as a cart change locks them.
            sql = f"WITH r AS ({_RELEASE_CART} RETURNING 1) {delete} AND (SELECT count(*) FROM r) >= 0"
            await self._db.fetch(sql, buyer_id, order_id, buyer_id, *item_ids)
        else:
            await self._db.fetch(delete, buyer_id, *item_ids)
            await self.release_checkout(buyer_id, order_id)

    async def claim_for_checkout(self, buyer_id: str, order_id: str, now: datetime) -> Cart | None:
        claim = (buyer_id, now, order_id, now, now - CHECKOUT_CLAIM_TIMEOUT)
        if self._db.is_postgres:
            rows = await self._db.fetch(_CLAIM_AND_READ, *claim, buyer_id)
            if rows:
                return _cart(buyer_id, rows)
        # SQLite (one writer at a time: nothing changes the cart in between), or PostgreSQL's claim above made
        # nothing of a held or changed cart: claim, then read.
        return await self.get(buyer_id) if await self._db.fetch(_CLAIM_CART, *claim) else None

    async def release_checkout(self, buyer_id: str, order_id: str) -> None:
        await self._db.fetch(_RELEASE_CART, buyer_id, order_id)

    async def _ensure_cart(self, buyer_id: str, now: datetime) -> None:
        await self._db.fetch(_TOUCH_CART, buyer_id, now)


# Only an item on sale is reserved: the cart read at the claim says so too, but an item may leave the catalog
# (archived, its seller disabled) between that read and this statement.
_RESERVE_STOCK = (
    "UPDATE items SET stock = stock - {} WHERE id = {}"
    f" AND {on_sale('items')} AND stock >= {{}} RETURNING stock"
)
_RELEASE_STOCK = "UPDATE items SET stock = stock + {} WHERE id = {}"


class SqlStockRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, item_id: str, quantity: int) -> bool:
        rows = await self._db.fetch(_RESERVE_STOCK, quantity, item_id, quantity)
        return bool(rows)

    async def reserve_all(self, wanted: Sequence[tuple[str, int]]) -> str | None:
        """Every (item, quantity) in one statement. PostgreSQL locks the rows in id order first (a MATERIALIZED
        CTE with ORDER BY ... FOR NO KEY UPDATE, which every row the UPDATE changes passes through), so two
        checkouts of the same items cannot deadlock; NO KEY UPDATE is the lock the UPDATE takes anyway, and lets
        other checkouts' order lines through (their foreign-key checks take KEY SHARE: FOR UPDATE would wait for
        them, and deadlock). SQLite has one writer at a time."""
        if len(wanted) == 1:
            item_id, quantity = wanted[0]
            return None if await self.reserve(item_id, quantity) else item_id
        args = [value for pair in wanted for value in pair]
        if self._db.is_postgres:
            rows = await self._db.fetch(_reserve_all_postgres(len(wanted)), *args)
        else:
            ids = [item_id for item_id, _ in wanted]
            rows = await self._db.fetch(_reserve_all_sqlite(len(wanted)), *args, *ids, *args)
        taken = {str(r["id"]) for r in rows}
        return next((item_id for item_id, _ in wanted if item_id not in taken), None)

    async def release(self, item_id: str, quantity: int) -> None:
        await self._db.fetch(_RELEASE_STOCK, quantity, item_id)


@functools.lru_cache(maxsize=32)
def _reserve_all_postgres(count: int) -> str:
    values = ", ".join(["(CAST({} AS uuid), CAST({} AS integer))"] * count)
    return (
        f"WITH want (id, quantity) AS (VALUES {values}),"
        " locked AS MATERIALIZED (SELECT i.id FROM items i JOIN want w ON w.id = i.id ORDER BY i.id FOR NO KEY UPDATE OF i)"
        " UPDATE items SET stock = items.stock - want.quantity FROM want, locked"
        f" WHERE items.id = want.id AND locked.id = items.id AND {on_sale('items')}"
        " AND items.stock >= want.quantity RETURNING items.id"
    )


@functools.lru_cache(maxsize=32)
def _reserve_all_sqlite(count: int) -> str:
    quantity = "CASE id " + " ".join(["WHEN {} THEN {}"] * count) + " END"
    marks = ", ".join(["{}"] * count)
    return (
        f"UPDATE items SET stock = stock - {quantity} WHERE id IN ({marks}) AND {on_sale('items')}"
        f" AND stock >= {quantity} RETURNING id"
    )


_ORDER_COLUMNS = select_list(OrderRow, "o")
_INSERT_ORDER = insert_sql(OrderRow)
_INSERT_PAYMENT = insert_sql(PaymentRow)
_ORDER = f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.id = {{}}"
_SAVE_ORDER_STATUS = "UPDATE orders SET status = {}, updated_at = {} WHERE id = {}"
_SAVE_PAYMENT_STATUS = "UPDATE payments SET status = {}, provider_payment_id = {}, failure_reason = {}, updated_at = {} WHERE id = {}"
_UNSETTLED_ORDERS = (
    f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.status IN ('pending_payment', 'processing')"
    " AND (o.updated_at < {} OR o.id IN (SELECT p.order_id FROM payments p WHERE p.failure_reason = {}))"
    " ORDER BY o.updated_at LIMIT {}"
)
# What may change about an order once placed (its lines and total never do): for settling the order that
# checkout has just placed without reading its lines back.
_CURRENT_STATE = (
    "SELECT o.status, o.updated_at, p.status AS payment_status, p.provider_payment_id, p.failure_reason"
    " FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id = {}"
)
# Lines by title, then item id, compared as code points on both engines (SQLite's default BINARY collation;
# "C" on PostgreSQL, whatever the database's own): the order `_by_title` gives in Python.
_ORDER_LINES_OF = (
    f"SELECT {select_list(OrderLineRow)} FROM order_lines WHERE order_id IN ({{marks}})"
    " ORDER BY title{collate}, item_id"
)
_PAYMENTS_OF = f"SELECT {select_list(PaymentRow)} FROM payments WHERE order_id IN ({{marks}})"


def _expect_columns(table: type[Any], *expected: str) -> None:
    """SqlOrderRepository.add passes its values positionally, in these orders (no dict per row on checkout's
    path): a column added to the table must be added there too, or the service does not start."""
    if columns(table) != expected:
        raise RuntimeError(f"{table._meta.tablename} columns changed: {columns(table)}; update commerce.py")


_expect_columns(
    OrderRow, "id", "buyer_id", "status", "total_cents", "currency", "traceparent", "created_at", "updated_at"
)
_expect_columns(OrderLineRow, "order_id", "item_id", "seller_id", "title", "quantity", "unit_price_cents")
_expect_columns(
    PaymentRow,
    "id",
    "order_id",
    "status",
    "method",
    "amount_cents",
    "currency",
    "provider",
    "provider_payment_id",
    "failure_reason",
    "created_at",
    "updated_at",
)


def _by_title(line: OrderLine) -> tuple[str, str]:
    return line.title, line.item_id


@functools.lru_cache(maxsize=64)
def _insert_lines_sql(count: int) -> str:
    """One INSERT of `count` order lines (multi-row VALUES, in OrderLineRow's column order)."""
    single = insert_sql(OrderLineRow)
    head, _, row = single.partition(" VALUES ")
    return f"{head} VALUES {', '.join([row] * count)}"


class SqlOrderRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, order: Order) -> None:
        """One statement on PostgreSQL (the order, its lines and its payment as data-modifying CTEs); on SQLite
        three: the order, every line in one multi-row INSERT, the payment."""
        assert order.payment is not None
        p = order.payment
        order_values = (
            order.id,
            order.buyer_id,
            order.status.value,
            order.total.cents,
            order.total.currency,
            order.traceparent,
            order.created_at,
            order.updated_at,
        )
        line_values = [
            value
            for line in order.lines
            for value in (
                order.id,
                line.item_id,
                line.seller_id,
                line.title,
                line.quantity,
                line.unit_price.cents,
            )
        ]
        payment_values = (
            p.id,
            order.id,
            p.status.value,
            p.method,
            p.amount.cents,
            p.amount.currency,
            p.provider,
            p.provider_payment_id,
            p.failure_reason,
            order.created_at,
            order.updated_at,
        )
        lines_sql = _insert_lines_sql(len(order.lines))
        if self._db.is_postgres:
            # The main statement is the order's (its span and metrics read `INSERT orders`); the foreign keys
            # of the lines and the payment are checked at the end of the statement, when the order exists.
            await self._db.fetch(
                f"WITH l AS ({lines_sql}), p AS ({_INSERT_PAYMENT}) {_INSERT_ORDER}",
                *line_values,
                *payment_values,
                *order_values,
            )
            return
        await self._db.fetch(_INSERT_ORDER, *order_values)
        await self._db.fetch(lines_sql, *line_values)
        await self._db.fetch(_INSERT_PAYMENT, *payment_values)

    async def lock_current(self, order: Order) -> Order | None:
        row = await self._db.fetch(
            _CURRENT_STATE + (" FOR UPDATE OF o" if self._db.is_postgres else ""), order.id
        )
        if not row:
            return None
        r = row[0]
        payment = order.payment
        if payment is not None and r["payment_status"] is not None:
            payment = dataclasses.replace(
                payment,
                status=PaymentStatus(r["payment_status"]),
                provider_payment_id=r["provider_payment_id"],
                failure_reason=r["failure_reason"],
            )
        return dataclasses.replace(
            order,
            status=OrderStatus(r["status"]),
            updated_at=r["updated_at"],
            payment=payment,
            lines=tuple(sorted(order.lines, key=_by_title)),  # as `get` reads them back
        )

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        canonical = parse_id(order_id)
        if canonical is None:
            return None
        lock = " FOR UPDATE" if for_update and self._db.is_postgres else ""
        rows = await self._db.fetch(_ORDER + lock, canonical)
        if not rows:
            return None
        return (await self._hydrate(rows))[0]

    async def save_status(self, order: Order) -> None:
        """One statement on PostgreSQL (the payment's UPDATE as a CTE), two on SQLite."""
        order_args = (order.status.value, order.updated_at, order.id)
        if order.payment is None:
            await self._db.fetch(_SAVE_ORDER_STATUS, *order_args)
            return
        p = order.payment
        payment_args = (p.status.value, p.provider_payment_id, p.failure_reason, order.updated_at, p.id)
        if self._db.is_postgres:
            await self._db.fetch(
                f"WITH p AS ({_SAVE_PAYMENT_STATUS}) {_SAVE_ORDER_STATUS}", *payment_args, *order_args
            )
            return
        await self._db.fetch(_SAVE_ORDER_STATUS, *order_args)
        await self._db.fetch(_SAVE_PAYMENT_STATUS, *payment_args)

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
        if user.role is Role.SELLER and canonical.get("seller", user.id) != user.id:
            # A seller's view of an order holds only their own lines: no other seller's are in sight.
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
        rows = await self._db.fetch(_UNSETTLED_ORDERS, updated_before, GATEWAY_UNAVAILABLE, limit)
        return await self._hydrate(rows)

    async def _hydrate(self, rows: Sequence[Mapping[str, Any]]) -> list[Order]:
        if not rows:
            return []
        ids = [str(r["id"]) for r in rows]
        marks = ", ".join("{}" for _ in ids)
        lines: dict[str, list[OrderLine]] = {i: [] for i in ids}
        currencies = {str(r["id"]): r["currency"] for r in rows}  # an order's lines are in its currency
        for r in await self._db.fetch(
            _ORDER_LINES_OF.format(marks=marks, collate=' COLLATE "C"' if self._db.is_postgres else ""), *ids
        ):
            order_id = str(r["order_id"])
            unit_price = Money(r["unit_price_cents"], currencies[order_id])
            lines[order_id].append(
                OrderLine(str(r["item_id"]), str(r["seller_id"]), r["title"], r["quantity"], unit_price)
            )
        payments: dict[str, Payment] = {}
        for r in await self._db.fetch(_PAYMENTS_OF.format(marks=marks), *ids):
            payments[str(r["order_id"])] = Payment(
                id=str(r["id"]),
                order_id=str(r["order_id"]),
                status=PaymentStatus(r["status"]),
                method=r["method"],
                amount=Money(r["amount_cents"], r["currency"]),
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
                total=Money(r["total_cents"], r["currency"]),
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                payment=payments.get(str(r["id"])),
                traceparent=r["traceparent"],
            )
            for r in rows
        ]


class PiccoloPaymentEventLog:
    """One row per provider event (webhooks and reconciliation, not checkout): Piccolo's query builder."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, event_id: str, event_type: str, order_id: str | None, outcome: str, now: datetime
    ) -> bool:
        canonical = parse_id(order_id) if order_id else None
        event = PaymentEventRow(
            event_id=event_id,
            type=event_type,
            order_id=uuid.UUID(canonical) if canonical else None,
            outcome=outcome,
            received_at=now,
        )
        rows = await (
            PaymentEventRow.insert(event)
            .on_conflict(target=PaymentEventRow.event_id, action="DO NOTHING")
            .returning(PaymentEventRow.event_id)
        )
        return bool(rows)


_DELIVERY_WITHOUT = ("last_status_code", "last_error")
# A delivery is queued only for a seller with an enabled endpoint: INSERT ... SELECT from that endpoint's row,
# one statement whether there is one or not (rather than a SELECT, then the INSERT).
_QUEUE_DELIVERY = (
    insert_sql(WebhookDeliveryRow, without=_DELIVERY_WITHOUT).replace(" VALUES (", " SELECT ", 1)[:-1]
    + " FROM seller_webhooks w WHERE w.seller_id = {} AND w.disabled_at IS NULL RETURNING id"
)


class SqlWebhookOutbox:
    """Queues in the payment's own transaction, on the checkout path."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue_order_paid(self, order: Order, now: datetime) -> int:
        return await self._enqueue(order, "order.paid", now, lambda _seller_id: {})

    async def enqueue_order_refunded(
        self, order: Order, refund: Refund, shares: Mapping[str, Money], now: datetime
    ) -> int:
        """Each seller hears of the refund, of their own share of it (`amount_cents`) and of the order's
        status: never of the refund's whole amount, which would reveal the other sellers' part."""

        def extra(seller_id: str) -> dict[str, Any]:
            return {
                "refund": {
                    "id": refund.id,
                    "amount_cents": shares[seller_id].cents,
                    "currency": refund.amount.currency,
                    "reason": refund.reason.value,
                    "created_at": refund.created_at.isoformat().replace("+00:00", "Z"),
                }
            }

        return await self._enqueue(order, "order.refunded", now, extra)

    async def _enqueue(
        self, order: Order, event_type: str, now: datetime, extra: Callable[[str], dict[str, Any]]
    ) -> int:
        queued = 0
        for seller_id in sorted(order.seller_ids):
            lines = [line for line in order.lines if line.seller_id == seller_id]
            payload = {
                "type": event_type,
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": {
                    "order_id": order.id,
                    "status": order.status.value,
                    "currency": order.currency,
                    "seller_total_cents": order.seller_view(seller_id).total.cents,
                    "lines": [
                        {
                            "item_id": line.item_id,
                            "title": line.title,
                            "quantity": line.quantity,
                            "unit_price_cents": line.unit_price.cents,
                        }
                        for line in lines
                    ],
                    **extra(seller_id),
                },
            }
            delivery = {
                "id": str(uuid.uuid4()),
                "seller_id": seller_id,
                "event_type": event_type,
                "payload": json.dumps(payload, separators=(",", ":")),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "traceparent": order.traceparent,
                "created_at": now,
                "updated_at": now,
            }
            rows = await self._db.fetch(
                _QUEUE_DELIVERY,
                *row_values(WebhookDeliveryRow, delivery, without=_DELIVERY_WITHOUT),
                seller_id,
            )
            queued += len(rows)
        return queued


_CLAIM_KEY = insert_sql(
    IdempotencyKeyRow,
    without=("response_status", "response_body"),
    suffix="ON CONFLICT (user_id, key) DO NOTHING RETURNING key",
)
_CLAIMED_KEY = (
    "SELECT request_hash, state, response_status, response_body, updated_at FROM idempotency_keys"
    " WHERE user_id = {} AND key = {}"
)
_TAKE_OVER_KEY = (
    "UPDATE idempotency_keys SET updated_at = {} WHERE user_id = {} AND key = {}"
    " AND state = 'in_progress' AND updated_at = {} RETURNING key"
)
_COMPLETE_KEY = (
    "UPDATE idempotency_keys SET state = 'completed', response_status = {}, response_body = {},"
    " updated_at = {} WHERE user_id = {} AND key = {}"
)


class SqlIdempotencyStore:
    """Keys live in the database, so they hold across restarts and workers. Each call is its own
    statement (autocommit): a claim must be visible to concurrent requests at once. Every checkout claims
    and completes a key, and retries read it back: written SQL; giving up and purging use the query builder."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(self, user_id: str, key: str, request_hash: str, now: datetime) -> IdempotentReplay | str:
        claim = {
            "user_id": user_id,
            "key": key,
            "request_hash": request_hash,
            "state": "in_progress",
            "created_at": now,
            "updated_at": now,
        }
        claimed = await self._db.fetch(
            _CLAIM_KEY, *row_values(IdempotencyKeyRow, claim, without=("response_status", "response_body"))
        )
        if claimed:
            return "new"
        rows = await self._db.fetch(_CLAIMED_KEY, user_id, key)
        if not rows:  # abandoned between our INSERT and SELECT: try once more
            return await self.begin(user_id, key, request_hash, now)
        row = rows[0]
        if row["request_hash"] != request_hash:
            return "mismatch"
        if row["state"] == "completed":
            return IdempotentReplay(status=row["response_status"], body=row["response_body"].encode())
        if row["updated_at"] < now - IDEMPOTENCY_TAKEOVER_AFTER:
            taken = await self._db.fetch(_TAKE_OVER_KEY, now, user_id, key, row["updated_at"])
            if taken:
                return "new"
        return "in_progress"

    async def complete(self, user_id: str, key: str, status: int, body: bytes, now: datetime) -> None:
        """Store the answer. Tried again while the database is busy or briefly unreachable: by now the order
        is placed (and may be charged), and a failure here would answer the buyer 503 and leave the key in
        progress, so that its retries got 409 until the takeover ran the checkout a second time."""
        for pause_s in (*_COMPLETE_RETRY_PAUSES_S, None):
            try:
                await self._db.fetch(_COMPLETE_KEY, status, body.decode(), now, user_id, key)
                return
            except Exception as exc:
                if pause_s is None or database_unavailable(exc) is None:
                    raise
            await asyncio.sleep(pause_s)

    async def abandon(self, user_id: str, key: str) -> None:
        await IdempotencyKeyRow.delete().where(
            (IdempotencyKeyRow.user_id == user_id)
            & (IdempotencyKeyRow.key == key)
            & (IdempotencyKeyRow.state == "in_progress")
        )

    async def purge(self, older_than: datetime) -> int:
        rows = await (
            IdempotencyKeyRow.delete()
            .where(IdempotencyKeyRow.created_at < older_than)
            .returning(IdempotencyKeyRow.key)
        )
        return len(rows)
