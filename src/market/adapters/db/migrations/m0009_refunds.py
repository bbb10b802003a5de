"""Refunds: one row per refund of an order (decided by an admin, or learnt from the provider), the sandbox
gateway's own refund ledger, and the order status `partially_refunded`.

`refunds.status` is `pending` from the moment a refund is decided (its amount is then no longer left to refund)
until the provider answers (`succeeded` or `failed`). `idempotency_scope`/`idempotency_key` are the admin's
key, so a retry after an unknown outcome resumes the same refund. `actor_id` is NULL for a refund made at the
provider itself.

The orders' status CHECK gains `partially_refunded`. PostgreSQL swaps the constraint. SQLite cannot alter a
CHECK, and rebuilding `orders` is impossible in a migration's transaction with foreign keys on (order lines and
payments refer to it; `PRAGMA foreign_keys` cannot change inside a transaction): its stored definition is
edited instead, the documented way for a change that leaves every stored row valid (sqlite.org/lang_altertable,
"writable_schema"), with the schema version bumped so that every connection reloads it."""

from piccolo.engine.base import Engine

from .runner import Migration

_OLD_STATUSES = "('pending_payment', 'processing', 'paid', 'payment_failed', 'refunded')"
_NEW_STATUSES = (
    "('pending_payment', 'processing', 'paid', 'payment_failed', 'partially_refunded', 'refunded')"
)

_TABLES = [
    """
    CREATE TABLE refunds (
        id UUID PRIMARY KEY,
        order_id UUID NOT NULL REFERENCES orders (id),
        amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
        currency VARCHAR(3) NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        reason VARCHAR(32) NOT NULL,
        idempotency_scope UUID,
        idempotency_key VARCHAR(255),
        provider_refund_id VARCHAR(255),
        actor_id UUID REFERENCES users (id),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX refunds_order_idx ON refunds (order_id, created_at)",
    "CREATE INDEX refunds_recent_idx ON refunds (created_at)",
    """
    CREATE TABLE sandbox_refunds (
        id VARCHAR(64) PRIMARY KEY,
        refund_id UUID NOT NULL UNIQUE,
        order_id UUID NOT NULL,
        amount_cents BIGINT NOT NULL,
        currency VARCHAR(3) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX sandbox_refunds_order_idx ON sandbox_refunds (order_id)",
]


async def _widen_sqlite_order_statuses(engine: Engine) -> None:
    rows = await engine.run_ddl("PRAGMA schema_version")
    version = int(next(iter(rows[0].values())))
    await engine.run_ddl("PRAGMA writable_schema = ON")
    await engine.run_ddl(
        f"UPDATE sqlite_master SET sql = replace(sql, '{_quoted(_OLD_STATUSES)}', '{_quoted(_NEW_STATUSES)}')"
        " WHERE type = 'table' AND name = 'orders'"
    )
    await engine.run_ddl(f"PRAGMA schema_version = {version + 1}")
    await engine.run_ddl("PRAGMA writable_schema = OFF")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


MIGRATION = Migration(
    version="0009_refunds",
    postgresql=[
        "ALTER TABLE orders DROP CONSTRAINT orders_status_check",
        f"ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN {_NEW_STATUSES})",
        *_TABLES,
    ],
    sqlite=[_widen_sqlite_order_statuses, *_TABLES],
)
