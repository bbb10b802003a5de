"""Session timelines in `session_entries` (m0005), read together with the session's business events in
`analytics_events`.

Writes come in batches from the recorder, never from a request: PostgreSQL takes them with COPY, SQLite with
one multi-row INSERT. Reads are an admin's: the timeline follows the (session_id, at) index; searches by trace
id or user go through their own indexes before grouping the matching sessions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from market.application.ports import Page
from market.domain.sessions import (
    ClientEvent,
    RequestEntry,
    SessionFilter,
    SessionSummary,
    Timeline,
    TimelineEntry,
    timeline_order,
)
from market.domain.validation import parse_id

from .cursors import decode_cursor, encode_cursor
from .database import Database

TABLE = "session_entries"
COLUMNS = (
    "session_id",
    "at",
    "kind",
    "method",
    "route",
    "status",
    "duration_us",
    "trace_id",
    "problem_type",
    "sentry_event_id",
    "user_id",
    "name",
    "fields",
)
SQLITE_ROWS_PER_INSERT = 500
"""13 parameters a row: far below SQLite's limit of 32 766 variables a statement."""
MAX_TIMELINE_ENTRIES = 5000
"""Of each kind (requests, business events): a timeline is for reading, not a bulk export."""
_CURSOR_SCOPE = "sessions"
# Business events: the analytics columns shown on a timeline, beside the event's name (its kind).
_EVENT_COLUMNS = (
    "item_id",
    "seller_id",
    "order_id",
    "query",
    "result_count",
    "quantity",
    "amount_cents",
    "currency",
    "method",
    "reason",
)


def _moment(value: Any) -> datetime:
    """A timestamp as the engines return it (aggregates on SQLite come back as text) in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _request_record(entry: RequestEntry) -> tuple[Any, ...]:
    return (
        entry.session_id,
        entry.at,
        "request",
        entry.method,
        entry.route,
        entry.status,
        round(entry.duration_ms * 1000),
        entry.trace_id,
        entry.problem_type,
        entry.sentry_event_id,
        entry.user_id,
        None,
        None,
    )


def _event_record(event: ClientEvent) -> tuple[Any, ...]:
    fields = json.dumps(dict(event.fields), separators=(",", ":")) if event.fields else None
    return (
        event.session_id,
        event.at,
        "event",
        None,
        None,
        None,
        None,
        event.trace_id,
        None,
        None,
        event.user_id,
        event.name,
        fields,
    )


class SqlSessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, requests: Sequence[RequestEntry], events: Sequence[ClientEvent]) -> None:
        if not requests and not events:
            return
        # Lazily: COPY encodes each row as it is made, so a batch's rows are never all alive at once.
        records = chain(map(_request_record, requests), map(_event_record, events))
        if self._db.is_postgres:
            await self._db.copy_records(TABLE, COLUMNS, records)
            return
        rows = list(records)
        row = "(" + ", ".join("{}" for _ in COLUMNS) + ")"
        async with self._db.write_transaction():
            for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
                chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
                await self._db.fetch(
                    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES " + ", ".join(row for _ in chunk),
                    *(value for record in chunk for value in record),
                )

    async def find(self, criteria: SessionFilter, limit: int, cursor: str | None) -> Page[SessionSummary]:
        where: list[str] = []
        args: list[Any] = []
        if criteria.start is not None:
            where.append("at >= {}")
            args.append(criteria.start)
        if criteria.end is not None:
            where.append("at <= {}")
            args.append(criteria.end)
        if criteria.user_id is not None:
            # Stored in canonical form (lower case): an id in capitals or braces is the same user.
            user_id = parse_id(criteria.user_id)
            if user_id is None:
                return Page([], None)
            where.append(f"session_id IN (SELECT session_id FROM {TABLE} WHERE user_id = {{}})")
            args.append(user_id)
        if criteria.trace_id is not None:
            where.append(
                f"session_id IN (SELECT session_id FROM {TABLE} WHERE trace_id = {{}}"
                " UNION SELECT session_id FROM analytics_events WHERE trace_id = {})"
            )
            args += [criteria.trace_id.lower()] * 2
        if criteria.order_id is not None:
            order_id = parse_id(criteria.order_id)
            if order_id is None:
                return Page([], None)
            where.append(
                "session_id IN (SELECT session_id FROM analytics_events"
                " WHERE order_id = {} AND session_id IS NOT NULL)"
            )
            args.append(uuid.UUID(order_id) if self._db.is_postgres else order_id)
        if criteria.has_errors:  # through the partial index of 5xx entries: only the sessions that had one
            where.append(
                f"session_id IN (SELECT session_id FROM {TABLE} WHERE status >= 500"
                + (" AND at >= {}" if criteria.start is not None else "")
                + (" AND at <= {}" if criteria.end is not None else "")
                + ")"
            )
            args += [moment for moment in (criteria.start, criteria.end) if moment is not None]
        having: list[str] = []
        if criteria.has_errors is not None:
            having.append(
                f"sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) {'>' if criteria.has_errors else '='} 0"
            )
        position = decode_cursor(cursor, _CURSOR_SCOPE)
        if position is not None:
            after = _cursor_position(position)
            having.append("(max(at) < {} OR (max(at) = {} AND session_id < {}))")
            args += [after[0], after[0], after[1]]
        sql = (
            "WITH g AS (SELECT session_id, min(at) AS started_at, max(at) AS ended_at,"
            " sum(CASE WHEN kind = 'request' THEN 1 ELSE 0 END) AS requests,"
            " sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors"
            f" FROM {TABLE}"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY session_id"
            + (" HAVING " + " AND ".join(having) if having else "")
            + f" ORDER BY max(at) DESC, session_id DESC LIMIT {int(limit) + 1})"
            " SELECT g.session_id, g.started_at, g.ended_at, g.requests, g.errors,"
            f" (SELECT u.user_id FROM {TABLE} u WHERE u.session_id = g.session_id AND u.user_id IS NOT NULL"
            "   ORDER BY u.at LIMIT 1) AS user_id,"
            f" (SELECT r.route FROM {TABLE} r WHERE r.session_id = g.session_id AND r.kind = 'request'"
            "   ORDER BY r.at DESC LIMIT 1) AS last_route"
            " FROM g ORDER BY g.ended_at DESC, g.session_id DESC"
        )
        rows = await self._db.fetch(sql, *args)
        items = [
            SessionSummary(
                session_id=row["session_id"],
                user_id=row["user_id"],
                started_at=_moment(row["started_at"]),
                ended_at=_moment(row["ended_at"]),
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                last_route=row["last_route"],
            )
            for row in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(
                _CURSOR_SCOPE, {"t": last.ended_at.isoformat(), "id": last.session_id}
            )
        return Page(items, next_cursor)

    async def timeline(self, session_id: str) -> Timeline | None:
        """The session's timeline: whole, or, when one kind has more than MAX_TIMELINE_ENTRIES, its latest part
        (where the failure being looked into is), cut at the same instant for requests and events alike."""
        limit = MAX_TIMELINE_ENTRIES
        # Newest first, so that a long session keeps its end; put back in time order below.
        recorded = await self._db.fetch(
            f"SELECT at, kind, method, route, status, duration_us, trace_id, problem_type, sentry_event_id,"
            f" user_id, name, fields FROM {TABLE} WHERE session_id = {{}} ORDER BY at DESC, id DESC"
            f" LIMIT {limit}",
            session_id,
        )
        business = await self._db.fetch(
            f"SELECT occurred_at, kind, trace_id, user_id, {', '.join(_EVENT_COLUMNS)} FROM analytics_events"
            f" WHERE session_id = {{}} ORDER BY occurred_at DESC, id DESC LIMIT {limit}",
            session_id,
        )
        if not recorded and not business:
            return None
        recorded.reverse()
        business.reverse()
        requests = [_recorded_entry(row) for row in recorded]
        events = [_business_entry(row) for row in business]
        cut = [kind[0].at for kind in (requests, events) if len(kind) >= limit]
        entries = sorted(requests + events, key=timeline_order)
        started_at = entries[0].at
        if cut:  # what is older than the first entry kept of a kind that was cut is left out of every kind
            started_at = await self._started_at(session_id)
            entries = [entry for entry in entries if entry.at >= max(cut)]
        users = [row["user_id"] for row in recorded if row["user_id"]] or [
            str(row["user_id"]) for row in business if row["user_id"]
        ]
        return Timeline(
            session_id=session_id,
            user_id=users[0] if users else None,
            started_at=started_at,
            ended_at=entries[-1].at,
            entries=entries,
        )

    async def _started_at(self, session_id: str) -> datetime:
        """The first instant of a session, of its requests and business events alike."""
        rows = await self._db.fetch(
            f"SELECT min(at) AS first FROM {TABLE} WHERE session_id = {{}}"
            " UNION ALL SELECT min(occurred_at) AS first FROM analytics_events WHERE session_id = {}",
            session_id,
            session_id,
        )
        return min(_moment(row["first"]) for row in rows if row["first"] is not None)

    async def prune(self, older_than: datetime) -> int:
        async with self._db.write_transaction(), self._db.long_statements():
            if self._db.is_postgres:
                rows = await self._db.fetch(
                    f"WITH d AS (DELETE FROM {TABLE} WHERE at < {{}} RETURNING 1) SELECT count(*) AS n FROM d",
                    older_than,
                )
            else:  # one connection inside the transaction: changes() counts the DELETE before it
                await self._db.fetch(f"DELETE FROM {TABLE} WHERE at < {{}}", older_than)
                rows = await self._db.fetch("SELECT changes() AS n")
        return int(rows[0]["n"])


def _cursor_position(position: Mapping[str, Any]) -> tuple[datetime, str]:
    from market.domain.errors import InvalidCursor
    from market.domain.sessions import valid_session_id

    try:
        raw_moment, session_id = position["t"], position["id"]
        if not isinstance(raw_moment, str):
            raise InvalidCursor()
        moment = _moment(raw_moment)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InvalidCursor() from None
    if not isinstance(session_id, str) or not valid_session_id(session_id):
        raise InvalidCursor()
    return moment, session_id


def _recorded_entry(row: Mapping[str, Any]) -> TimelineEntry:
    at = _moment(row["at"])
    if row["kind"] == "request":
        duration_us = row["duration_us"] or 0
        return TimelineEntry(
            at,
            "request",
            {
                "method": row["method"],
                "route": row["route"],
                "status": row["status"],
                "duration_ms": round(duration_us / 1000, 3),
                "trace_id": row["trace_id"],
                "problem_type": row["problem_type"],
                "sentry_event_id": row["sentry_event_id"],
            },
        )
    fields: dict[str, Any] = json.loads(row["fields"]) if row["fields"] else {}
    return TimelineEntry(
        at, "event", {**fields, "name": row["name"], "source": "client", "trace_id": row["trace_id"]}
    )


def _business_entry(row: Mapping[str, Any]) -> TimelineEntry:
    fields: dict[str, Any] = {
        column: str(row[column]) if isinstance(row[column], uuid.UUID) else row[column]
        for column in _EVENT_COLUMNS
        if row[column] is not None
    }
    return TimelineEntry(
        _moment(row["occurred_at"]),
        "event",
        {"name": row["kind"], "source": "server", "trace_id": row["trace_id"], **fields},
    )
