"""The schema as the code sees it: one Piccolo `Table` per table the migrations create, and the column lists
the repositories' SQL is written from (`columns`, `select_list`, `insert_sql`).

The schema itself is created by the SQL migrations in `migrations/` (full-text search, CHECK constraints,
partial indexes and composite keys are beyond the ORM); tests/integration/test_schema.py checks, on both
engines, that these classes and the migrated schema agree column by column (name, type, length, NULL,
UNIQUE, primary key). Piccolo gives every table one primary-key column; where the migration declares a
composite key the first of its columns carries `primary_key=True` and `COMPOSITE_KEYS` holds the whole key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from piccolo.columns import UUID, BigInt, BigSerial, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class UserRow(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=254, unique=True)
    display_name = Varchar(length=100)
    role = Varchar(length=16)
    password_hash = Text()
    created_at = Timestamptz()
    token_version = Integer(default=0)
    status = Varchar(length=16, default="active")
    last_login_at = Timestamptz(null=True, default=None)


class ItemRow(Table, tablename="items"):
    """Declared in the order of `Item`'s fields (a test keeps them so): rows map to items column by column."""

    id = UUID(primary_key=True)
    seller_id = UUID(index=True)
    title = Varchar(length=200)
    description = Text(default="")
    price_cents = BigInt()
    currency = Varchar(length=3)
    stock = Integer()
    category = Varchar(length=64)
    status = Varchar(length=16)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    suspended_at = Timestamptz(null=True, default=None)
    moderation_reason = Varchar(length=500, null=True, default=None)


class CartRow(Table, tablename="carts"):
    buyer_id = UUID(primary_key=True)
    checkout_order_id = UUID(null=True, default=None)
    checkout_started_at = Timestamptz(null=True, default=None)
    updated_at = Timestamptz()


class CartLineRow(Table, tablename="cart_lines"):
    buyer_id = UUID(primary_key=True)  # with item_id (COMPOSITE_KEYS)
    item_id = UUID()
    quantity = Integer()
    added_at = Timestamptz()


class OrderRow(Table, tablename="orders"):
    id = UUID(primary_key=True)
    buyer_id = UUID()
    status = Varchar(length=20)
    total_cents = BigInt()
    currency = Varchar(length=3)
    traceparent = Varchar(length=55, null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class OrderLineRow(Table, tablename="order_lines"):
    order_id = UUID(primary_key=True)  # with item_id (COMPOSITE_KEYS)
    item_id = UUID()
    seller_id = UUID()
    title = Varchar(length=200)
    quantity = Integer()
    unit_price_cents = BigInt()


class PaymentRow(Table, tablename="payments"):
    id = UUID(primary_key=True)
    order_id = UUID(unique=True)
    status = Varchar(length=16)
    method = Varchar(length=32)
    amount_cents = BigInt()
    currency = Varchar(length=3)
    provider = Varchar(length=32)
    provider_payment_id = Varchar(length=255, null=True, default=None)
    failure_reason = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PaymentEventRow(Table, tablename="payment_events"):
    event_id = Varchar(length=255, primary_key=True)
    type = Varchar(length=64)
    order_id = UUID(null=True, default=None)
    outcome = Varchar(length=32)
    received_at = Timestamptz()


class IdempotencyKeyRow(Table, tablename="idempotency_keys"):
    user_id = UUID(primary_key=True)  # with key (COMPOSITE_KEYS)
    key = Varchar(length=255)
    request_hash = Varchar(length=64)
    state = Varchar(length=16)
    response_status = Integer(null=True, default=None)
    response_body = Text(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class SandboxChargeRow(Table, tablename="sandbox_charges"):
    """The sandbox gateway's ledger (adapters/payments/sandbox.py)."""

    id = Varchar(length=64, primary_key=True)
    order_id = UUID(unique=True)
    status = Varchar(length=16)
    method = Varchar(length=32)
    amount_cents = BigInt()
    currency = Varchar(length=3)
    failure_reason = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()


class RefundRow(Table, tablename="refunds"):
    """One refund of an order (m0009)."""

    id = UUID(primary_key=True)
    order_id = UUID()
    amount_cents = BigInt()
    currency = Varchar(length=3)
    status = Varchar(length=16)
    reason = Varchar(length=32)
    idempotency_scope = UUID(null=True, default=None)
    idempotency_key = Varchar(length=255, null=True, default=None)
    provider_refund_id = Varchar(length=255, null=True, default=None)
    actor_id = UUID(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class SandboxRefundRow(Table, tablename="sandbox_refunds"):
    """The sandbox gateway's refund ledger (adapters/payments/sandbox.py)."""

    id = Varchar(length=64, primary_key=True)
    refund_id = UUID(unique=True)
    order_id = UUID()
    amount_cents = BigInt()
    currency = Varchar(length=3)
    created_at = Timestamptz()


class SellerWebhookRow(Table, tablename="seller_webhooks"):
    seller_id = UUID(primary_key=True)
    url = Text()
    secret = Text()
    disabled_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class WebhookDeliveryRow(Table, tablename="webhook_deliveries"):
    id = UUID(primary_key=True)
    seller_id = UUID()
    event_type = Varchar(length=64)
    payload = Text()
    status = Varchar(length=16)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(null=True, default=None)
    last_status_code = Integer(null=True, default=None)
    last_error = Text(null=True, default=None)
    traceparent = Varchar(length=55, null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class WebhookAttemptRow(Table, tablename="webhook_attempts"):
    id = UUID(primary_key=True)
    delivery_id = UUID()
    attempted_at = Timestamptz()
    status_code = Integer(null=True, default=None)
    error = Text(null=True, default=None)
    duration_ms = Integer()


class AnalyticsEventRow(Table, tablename="analytics_events"):
    """BIGINT GENERATED BY DEFAULT AS IDENTITY on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite."""

    id = BigSerial(primary_key=True)
    occurred_at = Timestamptz()
    kind = Varchar(length=32)
    session_id = Varchar(length=64, null=True, default=None)
    user_id = UUID(null=True, default=None)
    trace_id = Varchar(length=32, null=True, default=None)
    item_id = UUID(null=True, default=None)
    seller_id = UUID(null=True, default=None)
    order_id = UUID(null=True, default=None)
    query = Text(null=True, default=None)
    result_count = Integer(null=True, default=None)
    quantity = Integer(null=True, default=None)
    amount_cents = BigInt(null=True, default=None)
    currency = Varchar(length=3, null=True, default=None)
    method = Varchar(length=32, null=True, default=None)
    reason = Varchar(length=64, null=True, default=None)


class SessionEntryRow(Table, tablename="session_entries"):
    """Session replay (m0005): a request of a session, or an event its own client reported."""

    id = BigInt(primary_key=True)
    session_id = Varchar(length=64)
    at = Timestamptz()
    kind = Varchar(length=8)
    method = Varchar(length=8, null=True, default=None)
    route = Varchar(length=255, null=True, default=None)
    status = Integer(null=True, default=None)
    duration_us = Integer(null=True, default=None)
    trace_id = Varchar(length=32, null=True, default=None)
    problem_type = Varchar(length=255, null=True, default=None)
    sentry_event_id = Varchar(length=32, null=True, default=None)
    user_id = Varchar(length=36, null=True, default=None)
    name = Varchar(length=64, null=True, default=None)
    fields = Text(null=True, default=None)


class AuditRow(Table, tablename="audit_log"):
    id = UUID(primary_key=True)
    at = Timestamptz()
    actor_id = UUID(index=True)
    action = Varchar(length=64)
    target_type = Varchar(length=32)
    target_id = Varchar(length=64)
    details = Text(default="{}")
    trace_id = Varchar(length=32, null=True, default=None)


class AnalyticsSessionDayRow(Table, tablename="analytics_session_days"):
    """Rollups (m0010, rollups.py): a session's events of one UTC day and the funnel steps it took that day."""

    day = Varchar(length=10, primary_key=True)
    session_id = Varchar(length=64)
    events = Integer()
    first_at = Timestamptz()
    last_at = Timestamptz()
    browsed = Integer()
    carted = Integer()
    started = Integer()
    paid = Integer()
    alone = Integer()
    """1: the session had events on this day only (as far as the rollups know): no grouping across days."""
    bucket = Integer(null=True, default=None)
    """m0011: the whole seconds of its duration that day (last_at - first_at), as analytics_duration_days counts."""


class AnalyticsSearchDayRow(Table, tablename="analytics_search_days"):
    id = BigSerial(primary_key=True)
    day = Varchar(length=10)
    query = Text(null=True, default=None)
    searches = Integer()
    no_results = Integer()
    succeeded = Integer()


class AnalyticsViewDayRow(Table, tablename="analytics_view_days"):
    id = BigSerial(primary_key=True)
    day = Varchar(length=10)
    seller_id = UUID()
    item_id = UUID(null=True, default=None)
    session_id = Varchar(length=64, null=True, default=None)
    views = Integer()


class AnalyticsRollupDayRow(Table, tablename="analytics_rollup_days"):
    day = Varchar(length=10, primary_key=True)
    events = BigInt()
    rolled_at = Timestamptz()


class AnalyticsRollupStateRow(Table, tablename="analytics_rollup_state"):
    id = Integer(primary_key=True)
    watermark = BigInt()


class AnalyticsDayTotalsRow(Table, tablename="analytics_day_totals"):
    """Rollups (m0011): per day, the sessions alone on it (see AnalyticsSessionDayRow.alone), summed."""

    day = Varchar(length=10, primary_key=True)
    sessions = BigInt()
    events = BigInt()
    browsed = BigInt()
    carted = BigInt()
    """Browsed and carted (the funnel's steps are cumulative), as are `started` and `paid`."""
    started = BigInt()
    paid = BigInt()


class AnalyticsDurationDayRow(Table, tablename="analytics_duration_days"):
    day = Varchar(length=10, primary_key=True)
    bucket = Integer()
    sessions = BigInt()


class AnalyticsItemViewDayRow(Table, tablename="analytics_item_view_days"):
    seller_id = UUID(primary_key=True)
    day = Varchar(length=10)
    item_id = UUID()
    views = BigInt()
    viewers = BigInt()


class AnalyticsSellerViewDayRow(Table, tablename="analytics_seller_view_days"):
    seller_id = UUID(primary_key=True)
    day = Varchar(length=10)
    views = BigInt()
    viewers = BigInt()


class AnalyticsOpenSessionRow(Table, tablename="analytics_open_sessions"):
    """Rollups (m0014): a session the background pass has seen on a day not rolled up yet (AnalyticsRollups.mark_open)."""

    day = Varchar(length=10, primary_key=True)
    session_id = Varchar(length=64)
    alone_day = Varchar(length=10, null=True, default=None)
    """The rolled-up day the session was alone on when recorded (a report looks it up), NULL if none."""


ALL_TABLES: tuple[type[Table], ...] = (
    UserRow,
    ItemRow,
    CartRow,
    CartLineRow,
    OrderRow,
    OrderLineRow,
    PaymentRow,
    PaymentEventRow,
    IdempotencyKeyRow,
    SandboxChargeRow,
    SellerWebhookRow,
    WebhookDeliveryRow,
    WebhookAttemptRow,
    AnalyticsEventRow,
    SessionEntryRow,
    AuditRow,
    RefundRow,
    SandboxRefundRow,
    AnalyticsSessionDayRow,
    AnalyticsSearchDayRow,
    AnalyticsViewDayRow,
    AnalyticsRollupDayRow,
    AnalyticsRollupStateRow,
    AnalyticsDayTotalsRow,
    AnalyticsDurationDayRow,
    AnalyticsItemViewDayRow,
    AnalyticsSellerViewDayRow,
    AnalyticsOpenSessionRow,
)

COMPOSITE_KEYS: dict[type[Table], tuple[str, ...]] = {
    CartLineRow: ("buyer_id", "item_id"),
    OrderLineRow: ("order_id", "item_id"),
    IdempotencyKeyRow: ("user_id", "key"),
    AnalyticsSessionDayRow: ("day", "session_id"),
    AnalyticsDurationDayRow: ("day", "bucket"),
    AnalyticsItemViewDayRow: ("seller_id", "day", "item_id"),
    AnalyticsSellerViewDayRow: ("seller_id", "day"),
    AnalyticsOpenSessionRow: ("day", "session_id"),
}


def primary_key(table: type[Table]) -> tuple[str, ...]:
    """The columns of `table`'s primary key, as the migration declares it."""
    return COMPOSITE_KEYS.get(table, (table._meta.primary_key._meta.db_column_name,))


def columns(table: type[Table], *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`table`'s column names in declaration order, leaving out `without`."""
    names = tuple(column._meta.db_column_name for column in table._meta.columns)
    unknown = set(without) - set(names)
    if unknown:
        raise ValueError(f"{table._meta.tablename} has no column {sorted(unknown)}")
    return tuple(name for name in names if name not in without)


def select_list(table: type[Table], alias: str | None = None, *, without: tuple[str, ...] = ()) -> str:
    """`a.col1, a.col2, ...` for a SELECT of `table` under `alias` (bare names without one)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in columns(table, without=without))


def insert_sql(table: type[Table], *, without: tuple[str, ...] = (), suffix: str = "") -> str:
    """`INSERT INTO t (c1, c2, ...) VALUES ({}, {}, ...)` + `suffix`, one `{}` per column in declaration
    order: the arguments follow the Table's order."""
    names = columns(table, without=without)
    placeholders = ", ".join("{}" for _ in names)
    statement = f"INSERT INTO {table._meta.tablename} ({', '.join(names)}) VALUES ({placeholders})"
    return statement + (f" {suffix}" if suffix else "")


def row_values(
    table: type[Table], values: Mapping[str, Any], *, without: tuple[str, ...] = ()
) -> tuple[Any, ...]:
    """`values` (by column name) in `table`'s column order, for the placeholders of `insert_sql(table)`; a
    missing or unknown column is an error, so the arguments cannot drift from the statement."""
    names = columns(table, without=without)
    if values.keys() != set(names):
        raise ValueError(
            f"values for {table._meta.tablename}: missing {sorted(set(names) - values.keys())},"
            f" unknown {sorted(values.keys() - set(names))}"
        )
    return tuple(values[name] for name in names)
