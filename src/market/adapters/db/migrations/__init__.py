"""Schema migrations: ordered, each with SQL for both engines, applied once and recorded in
`market_migrations`. `MIGRATIONS[-1].version` is the migration head (backups record it)."""

from __future__ import annotations

from . import (
    m0001_initial,
    m0002_commerce,
    m0003_analytics,
    m0004_account_revocation,
    m0005_session_replay,
    m0006_analytics_partitions,
    m0007_admin_audit,
    m0008_session_replay_indexes,
    m0009_refunds,
    m0010_analytics_rollups,
    m0011_analytics_day_totals,
    m0012_search_tiers,
    m0013_pending_refunds_index,
    m0014_analytics_open_sessions,
    m0015_search_unaccent,
    m0016_disabled_users_index,
)
from .runner import Migration

MIGRATIONS: tuple[Migration, ...] = (
    m0001_initial.MIGRATION,
    m0002_commerce.MIGRATION,
    m0003_analytics.MIGRATION,
    m0004_account_revocation.MIGRATION,
    m0005_session_replay.MIGRATION,
    m0006_analytics_partitions.MIGRATION,
    m0007_admin_audit.MIGRATION,
    m0008_session_replay_indexes.MIGRATION,
    m0009_refunds.MIGRATION,
    m0010_analytics_rollups.MIGRATION,
    m0011_analytics_day_totals.MIGRATION,
    m0012_search_tiers.MIGRATION,
    m0013_pending_refunds_index.MIGRATION,
    m0014_analytics_open_sessions.MIGRATION,
    m0015_search_unaccent.MIGRATION,
    m0016_disabled_users_index.MIGRATION,
)
HEAD = MIGRATIONS[-1].version

TABLES: tuple[str, ...] = (
    "users",
    "items",
    "carts",
    "cart_lines",
    "orders",
    "order_lines",
    "payments",
    "payment_events",
    "idempotency_keys",
    "sandbox_charges",
    "seller_webhooks",
    "webhook_deliveries",
    "webhook_attempts",
    "analytics_events",
    "session_entries",
    "audit_log",
    "refunds",
    "sandbox_refunds",
    "analytics_session_days",
    "analytics_search_days",
    "analytics_view_days",
    "analytics_rollup_days",
    "analytics_rollup_state",
    "analytics_day_totals",
    "analytics_duration_days",
    "analytics_item_view_days",
    "analytics_seller_view_days",
    "analytics_open_sessions",
)
"""The business tables the migrations up to HEAD create, on both engines (search indexes aside): readiness
checks that every one exists. A test keeps this list equal to what the migrations make."""
