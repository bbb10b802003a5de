"""Piccolo table definitions. The schema itself is created by the SQL migrations in `migrations/`
(full-text search, CHECK constraints and partial indexes are beyond the ORM); a test checks that these
classes and the migrated schema agree."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Integer, Text, Timestamptz, Varchar
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
    id = UUID(primary_key=True)
    seller_id = UUID(index=True)
    title = Varchar(length=200)
    description = Text()
    price_cents = BigInt()
    currency = Varchar(length=3)
    stock = Integer()
    category = Varchar(length=64)
    status = Varchar(length=16)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    suspended_at = Timestamptz(null=True, default=None)
    moderation_reason = Varchar(length=500, null=True, default=None)


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


ALL_TABLES: tuple[type[Table], ...] = (UserRow, ItemRow, SessionEntryRow, AuditRow)
