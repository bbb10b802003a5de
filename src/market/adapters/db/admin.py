"""The admin tools' repositories: the people list, the active-admin count, and the audit trail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from market.application.ports import EventPublisher, Page
from market.domain.admin import AuditAction, AuditEntry, AuditFilter, AuditTarget, UserFilter
from market.domain.users import Role, User
from market.domain.validation import parse_id

from .analytics import Identity, anonymous
from .cursors import decode_keyset_cursor, encode_keyset_cursor
from .database import Database
from .engines import fold_case, folded_sql
from .repositories import PiccoloUnitOfWork
from .rows import user_from_row
from .tables import AuditRow, UserRow, insert_sql, row_values, select_list
from .webhooks import SqlWebhookDeliveryRepository

_USER_COLUMNS = select_list(UserRow)
_SET_ROLE = "UPDATE users SET role = {} WHERE id = {}"
_ACTIVE_ADMINS = "SELECT id FROM users WHERE role = 'admin' AND status = 'active' ORDER BY id"
_APPEND_AUDIT = insert_sql(AuditRow)
_AUDIT_COLUMNS = select_list(AuditRow)
_MODERATE_ITEM = "UPDATE items SET suspended_at = {}, moderation_reason = {} WHERE id = {}"


def _scope(kind: str, *parts: object) -> str:
    """A cursor scope bound to the list and its filter (a digest: a long `q` must not lengthen cursors)."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = fold_case(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlUserDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, user_filter: UserFilter, limit: int, cursor: str | None) -> Page[User]:
        scope = _scope("users", user_filter.query, user_filter.role, user_filter.status)
        position = decode_keyset_cursor(cursor, scope)
        where: list[str] = []
        args: list[Any] = []
        if user_filter.query:
            # The pattern is folded by Python (_like) and the columns alike on both engines (fold_case).
            email, name = (folded_sql(c, is_postgres=self._db.is_postgres) for c in ("email", "display_name"))
            where.append(f"({email} LIKE {{}} ESCAPE '\\' OR {name} LIKE {{}} ESCAPE '\\')")
            args += [_like(user_filter.query)] * 2
        if user_filter.role is not None:
            where.append("role = {}")
            args.append(user_filter.role.value)
        if user_filter.status is not None:
            where.append("status = {}")
            args.append(user_filter.status.value)
        if position is not None:
            where.append("(created_at, id) < ({}, {})")
            args += list(position)
        sql = f"SELECT {_USER_COLUMNS} FROM users"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._db.fetch(sql + " ORDER BY created_at DESC, id DESC LIMIT {}", *args, limit + 1)
        users = [user_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_keyset_cursor(scope, users[-1].created_at, users[-1].id)
        return Page(items=users, next_cursor=next_cursor)

    async def set_role(self, user_id: str, role: Role) -> None:
        await self._db.fetch(_SET_ROLE, role.value, user_id)

    async def count_active_admins(self) -> int:
        lock = " FOR UPDATE" if self._db.is_postgres else ""
        rows = await self._db.fetch(_ACTIVE_ADMINS + lock)
        return len(rows)


def _entry_from_row(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=str(row["id"]),
        at=row["at"],
        actor_id=str(row["actor_id"]),
        action=AuditAction(row["action"]),
        target_type=AuditTarget(row["target_type"]),
        target_id=row["target_id"],
        details=json.loads(row["details"]),
        trace_id=row["trace_id"],
    )


class SqlAuditLog:
    """`identity` (bound by bootstrap) gives the trace id an entry carries when its use case names none."""

    def __init__(self, db: Database, identity: Identity = anonymous) -> None:
        self._db = db
        self._identity = identity

    async def append(self, entry: AuditEntry) -> None:
        values = {
            "id": entry.id,
            "at": entry.at,
            "actor_id": entry.actor_id,
            "action": entry.action.value,
            "target_type": entry.target_type.value,
            "target_id": entry.target_id,
            "details": json.dumps(dict(entry.details), separators=(",", ":"), sort_keys=True),
            "trace_id": entry.trace_id or self._identity()[2],
        }
        await self._db.fetch(_APPEND_AUDIT, *row_values(AuditRow, values))

    async def find(self, audit_filter: AuditFilter, limit: int, cursor: str | None) -> Page[AuditEntry]:
        f = audit_filter
        scope = _scope("audit", f.actor_id, f.action, f.target_id, f.since, f.until)
        position = decode_keyset_cursor(cursor, scope)
        where: list[str] = []
        args: list[Any] = []
        if f.actor_id is not None:
            actor = parse_id(f.actor_id)
            if actor is None:  # not an id at all: nobody
                return Page(items=[], next_cursor=None)
            where.append("actor_id = {}")
            args.append(actor)
        if f.action is not None:
            where.append("action = {}")
            args.append(f.action.value)
        if f.target_id is not None:
            where.append("target_id = {}")
            args.append(parse_id(f.target_id) or f.target_id)
        if f.since is not None:
            where.append("at >= {}")
            args.append(f.since)
        if f.until is not None:
            where.append("at < {}")
            args.append(f.until)
        if position is not None:
            where.append("(at, id) < ({}, {})")
            args += list(position)
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._db.fetch(sql + " ORDER BY at DESC, id DESC LIMIT {}", *args, limit + 1)
        entries = [_entry_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_keyset_cursor(scope, entries[-1].at, entries[-1].id)
        return Page(items=entries, next_cursor=next_cursor)


class PiccoloAdminUnitOfWork(PiccoloUnitOfWork):
    """The unit of work of admin writes: the commerce repositories plus the people list and the audit trail,
    all in the one transaction."""

    def __init__(
        self, db: Database, identity: Identity = anonymous, events: EventPublisher | None = None
    ) -> None:
        super().__init__(db, identity, events)
        self.audit = SqlAuditLog(db, identity)
        self.directory = SqlUserDirectory(db)
        self.moderation = SqlItemModeration(db)
        self.deliveries = SqlWebhookDeliveryRepository(db)


class SqlItemModeration:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, item_id: str, suspended_at: datetime | None, reason: str | None) -> None:
        await self._db.fetch(_MODERATE_ITEM, suspended_at, reason, item_id)
