"""Session replay over HTTP: admins find sessions and read their timelines (`GET /admin/sessions`,
`GET /admin/sessions/{session_id}`); a session's own client adds what the shopper saw
(`POST /sessions/{session_id}/events`). The use cases arrive by dependency injection, their ports bound in
bootstrap (as `session_links`, the addresses of the trace and Sentry pages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, Parameter

from market.application.sessions import AddClientEvents, FindSessions, SessionTimeline
from market.domain.sessions import (
    EVENT_NAME,
    MAX_CLIENT_EVENTS,
    MAX_EVENT_FIELDS,
    MAX_FIELD_TEXT,
    SessionFilter,
    SessionSummary,
    Timeline,
)
from market.domain.users import Role

from .analytics import FromParam, ToParam, period_of
from .auth import requires
from .limits import rate_limited
from .openapi import problems
from .query import strict_request
from .validation import EMAIL, NO_NUL

TRACE_ID_PATTERN = r"^[0-9a-fA-F]{32}$"


@dataclass(frozen=True, slots=True)
class SessionLinks:
    """Where the session page sends people: the trace viewer and Sentry (None: no link)."""

    trace_url_template: str | None = None
    sentry_url_template: str | None = None
    session_page: str = "/admin/sessions/{session_id}"

    def trace(self, trace_id: str | None) -> str | None:
        if not self.trace_url_template or not trace_id:
            return None
        return self.trace_url_template.replace("{trace_id}", trace_id)

    def sentry(self, event_id: str | None) -> str | None:
        if not self.sentry_url_template or not event_id:
            return None
        return self.sentry_url_template.replace("{event_id}", event_id)


class SessionSummaryOut(msgspec.Struct):
    session_id: str
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    requests: int
    errors: int
    """Requests answered with a 5xx."""
    last_route: str | None

    @classmethod
    def of(cls, s: SessionSummary) -> SessionSummaryOut:
        return cls(s.session_id, s.user_id, s.started_at, s.ended_at, s.requests, s.errors, s.last_route)


class SessionPage(msgspec.Struct):
    items: list[SessionSummaryOut]
    next_cursor: str | None


class TimelineOut(msgspec.Struct):
    """`timeline` in time order. A `request` entry: `method, route` (the template), `status, duration_ms,
    trace_id, problem_type, sentry_event_id`. An `event` entry: `name`, `source` (`server`: a business event
    such as `search` or `payment_declined`; `client`: reported by the session's own client), its `trace_id`
    and its fields."""

    session_id: str
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    timeline: list[dict[str, Any]]


def timeline_out(timeline: Timeline) -> TimelineOut:
    """The API's shape of a timeline (the CLI's `--json` prints the same)."""
    return TimelineOut(
        session_id=timeline.session_id,
        user_id=timeline.user_id,
        started_at=timeline.started_at,
        ended_at=timeline.ended_at,
        timeline=[{"at": entry.at, "kind": entry.kind, **entry.fields} for entry in timeline.entries],
    )


def page_out(page: Any) -> SessionPage:
    return SessionPage(items=[SessionSummaryOut.of(s) for s in page.items], next_cursor=page.next_cursor)


_EVENT = {
    "type": "object",
    "required": ["at", "name"],
    "properties": {
        "at": {"type": "string", "format": "date-time", "description": "Within the last 24 hours."},
        "name": {"type": "string", "pattern": EVENT_NAME.pattern, "maxLength": 64},
    },
    "additionalProperties": {
        "type": ["string", "number", "boolean", "null"],
        "maxLength": MAX_FIELD_TEXT,
        "pattern": NO_NUL,
    },
    "maxProperties": MAX_EVENT_FIELDS + 2,
}
"""An event as the schema can describe it (the 24-hour window and the field names are checked beyond it)."""


class ClientEventsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Up to 20 events, each `{at, name, ...}`: `at` an RFC 3339 time within the last 24 hours, `name` 1-64
    letters, digits, `.`, `_`, `:` or `-`, and at most 10 more flat fields (text up to 200 characters, numbers,
    booleans, null)."""

    events: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            min_length=1, max_length=MAX_CLIENT_EVENTS, extra_json_schema={"extra": {"items": _EVENT}}
        ),
    ]


class ClientEventsAccepted(msgspec.Struct):
    accepted: int


class SessionController(Controller):
    path = "/admin/sessions"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    before_request = strict_request  # as every admin list: a misspelt filter must not answer with everything

    @get("/", operation_id="listSessions", responses=problems(400, 401, 403))
    async def list_sessions(
        self,
        find_sessions: NamedDependency[FindSessions],
        now: NamedDependency[Callable[[], datetime]],
        raw_from: FromParam = None,
        raw_to: ToParam = None,
        user_id: Annotated[str | None, Parameter(max_length=64, pattern=r"^[^\x00]*$")] = None,
        email: Annotated[str | None, Parameter(max_length=254, pattern=EMAIL)] = None,
        order_id: Annotated[str | None, Parameter(max_length=64, pattern=r"^[^\x00]*$")] = None,
        trace_id: Annotated[str | None, Parameter(pattern=TRACE_ID_PATTERN)] = None,
        has_errors: FromQuery[bool | None] = None,
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> SessionPage:
        """Sessions most recently active first, each with its first and last request, its request count, its
        errors (5xx answers) and its last route. Filters: `user_id`, `email` (the account's), `order_id` (the
        session that checked the order out), `trace_id` (of any of its requests or events), `has_errors`,
        and the period `from`/`to` (default: the last 30 days) in which its entries fall."""
        period = period_of(raw_from, raw_to, now())
        criteria = SessionFilter(
            user_id=user_id,
            order_id=order_id,
            trace_id=trace_id,
            has_errors=has_errors,
            start=period.start,
            end=period.end,
        )
        page = await find_sessions(criteria, limit, cursor or None, email=email)
        return page_out(page)

    @get("/{session_id:str}", operation_id="getSession", responses=problems(401, 403, 404))
    async def get_session(
        self, session_id: FromPath[str], session_timeline: NamedDependency[SessionTimeline]
    ) -> TimelineOut:
        """The session's whole story in time order: its requests and its business events (views, searches
        with their result count, cart changes, checkout, payment outcomes), and what its client reported.
        Unknown session → 404."""
        return timeline_out(await session_timeline(session_id))


@post(
    "/sessions/{session_id:str}/events",
    operation_id="addSessionEvents",
    tags=["sessions"],
    status_code=202,
    guards=[rate_limited("session-events")],
    responses=problems(400, 403, 413, 422, 429),
    security=[],
)
async def add_session_events(
    request: Request[Any, Any, Any],
    session_id: FromPath[str],
    data: JSONBody[ClientEventsIn],
    add_client_events: NamedDependency[AddClientEvents],
    x_session_id: Annotated[
        str | None,
        HeaderParameter(
            name="X-Session-Id",
            # Not validated here: the contract replaces an invalid id with a new one (the edge middleware does),
            # so a malformed header means "another session" (403), never a 400.
            description="The caller's own session (1–64 chars of `[A-Za-z0-9._-]`): events are taken only for "
            "this id. An invalid one is replaced by a new id, so its events are refused (403).",
        ),
    ] = None,
) -> ClientEventsAccepted:
    """Add what the shopper saw (page views, client-side errors) to the caller's own session timeline. Only
    for the session named by the caller's `X-Session-Id` header (another → 403). Small batches, rate-limited
    per client address; accepted events are written shortly after the answer."""
    state = request.scope.get("state", {})
    user = state.get("user")
    accepted = await add_client_events(
        session_id,
        {"events": data.events},
        # The session the edge middleware settled on: the header's id when it is a valid one.
        caller_session=state.get("session_id") if x_session_id else None,
        trace_id=state.get("trace_id"),
        user_id=getattr(user, "id", None),
    )
    return ClientEventsAccepted(accepted=accepted)
