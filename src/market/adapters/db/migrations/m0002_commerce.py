"""Carts, orders, payments, idempotency keys, provider events, the sandbox gateway's ledger, and the seller
webhook outbox. The SQL is the same on both engines (UUID/TIMESTAMPTZ are only names to SQLite, and they
select Piccolo's converters)."""

from .runner import Migration

_ORDER_STATUSES = "('pending_payment', 'processing', 'paid', 'payment_failed', 'refunded')"
_PAYMENT_STATUSES = "('pending', 'processing', 'succeeded', 'declined', 'refunded')"

COMMON = [
    """
    CREATE TABLE carts (
        buyer_id UUID PRIMARY KEY REFERENCES users (id),
        checkout_order_id UUID,
        checkout_started_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE cart_lines (
        buyer_id UUID NOT NULL REFERENCES users (id),
        item_id UUID NOT NULL REFERENCES items (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        added_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (buyer_id, item_id)
    )
    """,
    f"""
    CREATE TABLE orders (
        id UUID PRIMARY KEY,
        buyer_id UUID NOT NULL REFERENCES users (id),
        status VARCHAR(20) NOT NULL CHECK (status IN {_ORDER_STATUSES}),
        total_cents BIGINT NOT NULL CHECK (total_cents >= 0),
        currency VARCHAR(3) NOT NULL,
        traceparent VARCHAR(55),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX orders_buyer_recent_idx ON orders (buyer_id, created_at DESC, id DESC)",
    "CREATE INDEX orders_recent_idx ON orders (created_at DESC, id DESC)",
    "CREATE INDEX orders_unsettled_idx ON orders (status, updated_at)"
    " WHERE status IN ('pending_payment', 'processing')",
    """
    CREATE TABLE order_lines (
        order_id UUID NOT NULL REFERENCES orders (id),
        item_id UUID NOT NULL REFERENCES items (id),
        seller_id UUID NOT NULL REFERENCES users (id),
        title VARCHAR(200) NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
        PRIMARY KEY (order_id, item_id)
    )
    """,
    "CREATE INDEX order_lines_seller_idx ON order_lines (seller_id, order_id)",
    f"""
    CREATE TABLE payments (
        id UUID PRIMARY KEY,
        order_id UUID NOT NULL UNIQUE REFERENCES orders (id),
        status VARCHAR(16) NOT NULL CHECK (status IN {_PAYMENT_STATUSES}),
        method VARCHAR(32) NOT NULL,
        amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
        currency VARCHAR(3) NOT NULL,
        provider VARCHAR(32) NOT NULL,
        provider_payment_id VARCHAR(255),
        failure_reason VARCHAR(64),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX payments_provider_idx ON payments (provider_payment_id)",
    """
    CREATE TABLE idempotency_keys (
        user_id UUID NOT NULL,
        key VARCHAR(255) NOT NULL,
        request_hash VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL CHECK (state IN ('in_progress', 'completed')),
        response_status INTEGER,
        response_body TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (user_id, key)
    )
    """,
    "CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at)",
    """
    CREATE TABLE payment_events (
        event_id VARCHAR(255) PRIMARY KEY,
        type VARCHAR(64) NOT NULL,
        order_id UUID,
        outcome VARCHAR(32) NOT NULL,
        received_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE sandbox_charges (
        id VARCHAR(64) PRIMARY KEY,
        order_id UUID NOT NULL UNIQUE,
        status VARCHAR(16) NOT NULL,
        method VARCHAR(32) NOT NULL,
        amount_cents BIGINT NOT NULL,
        currency VARCHAR(3) NOT NULL,
        failure_reason VARCHAR(64),
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE seller_webhooks (
        seller_id UUID PRIMARY KEY REFERENCES users (id),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        disabled_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE webhook_deliveries (
        id UUID PRIMARY KEY,
        seller_id UUID NOT NULL REFERENCES users (id),
        event_type VARCHAR(64) NOT NULL,
        payload TEXT NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ,
        last_status_code INTEGER,
        last_error TEXT,
        traceparent VARCHAR(55),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX webhook_deliveries_seller_idx ON webhook_deliveries (seller_id, created_at DESC)",
    """
    CREATE TABLE webhook_attempts (
        id UUID PRIMARY KEY,
        delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id),
        attempted_at TIMESTAMPTZ NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempted_at)",
]

MIGRATION = Migration(version="0002_commerce", postgresql=COMMON, sqlite=COMMON)
