"""The dashboard's session replay pages: `/admin/sessions` (search form and list) and
`/admin/sessions/{session_id}` (the timeline: the failing request highlighted, durations as bars, links to the
trace and to Sentry). Same sign-in, headers and Content-Security-Policy as the dashboard (dashboard.py); the
markup is in templates/sessions.html and templates/session.html."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from market.application.sessions import FindSessions, SessionTimeline
from market.domain.analytics import Period, parse_period
from market.domain.errors import InvalidCursor, NotFound, ValidationFailed
from market.domain.sessions import SessionFilter, Timeline
from market.domain.users import Role, User

from .sessions import SessionLinks

UNFILTERED_PERIOD = timedelta(days=1)
"""What the Sessions page lists when no filter is given (a filter searches the last 30 days)."""
RECENT_FAILURES = 8
"""Sessions that hit a 5xx, newest first, on the dashboard."""
BAR_WIDTH = 100
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_MAX_INPUT = 254


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the timeline as the page draws it."""

    at: str
    kind: str
    title: str
    status: int | None
    duration_ms: float | None
    bar: float
    """Width of the duration bar, 0 to BAR_WIDTH (relative to the slowest request of the session)."""
    failing: bool
    trace_id: str | None
    trace_url: str | None
    sentry_event_id: str | None
    sentry_url: str | None
    problem_type: str | None
    details: list[tuple[str, str]]


def timeline_rows(timeline: Timeline, links: SessionLinks) -> list[Row]:
    durations = [e.fields.get("duration_ms") or 0 for e in timeline.entries if e.kind == "request"]
    slowest = max(durations, default=0) or 1
    rows = []
    for entry in timeline.entries:
        f = entry.fields
        at = entry.at.strftime("%H:%M:%S.%f")[:-3]
        if entry.kind == "request":
            duration = float(f.get("duration_ms") or 0)
            rows.append(
                Row(
                    at=at,
                    kind="request",
                    title=f"{f.get('method')} {f.get('route') or '(no route)'}",
                    status=f.get("status"),
                    duration_ms=duration,
                    bar=round(max(duration / slowest * BAR_WIDTH, 0.5), 2),
                    failing=(f.get("status") or 0) >= 500,
                    trace_id=f.get("trace_id"),
                    trace_url=links.trace(f.get("trace_id")),
                    sentry_event_id=f.get("sentry_event_id"),
                    sentry_url=links.sentry(f.get("sentry_event_id")),
                    problem_type=f.get("problem_type"),
                    details=[],
                )
            )
        else:
            details = [
                (k, str(v)) for k, v in f.items() if k not in ("name", "source", "trace_id") and v is not None
            ]
            rows.append(
                Row(
                    at=at,
                    kind="event",
                    title=str(f.get("name")),
                    status=None,
                    duration_ms=None,
                    bar=0,
                    failing=False,
                    trace_id=f.get("trace_id"),
                    trace_url=links.trace(f.get("trace_id")),
                    sentry_event_id=None,
                    sentry_url=None,
                    problem_type=None,
                    details=[("source", str(f.get("source"))), *details],
                )
            )
    return rows


async def recent_failures(find_sessions: FindSessions, now: datetime) -> list[Any]:
    """The latest sessions that hit a 5xx (last 30 days), for the dashboard."""
    period = parse_period(None, None, now)
    page = await find_sessions(
        SessionFilter(has_errors=True, start=period.start, end=period.end), RECENT_FAILURES, None
    )
    return list(page.items)


class PageRefused(Exception):
    """A page request answered by `response` instead of its page: the sign-in redirect, a 403, a refused form.
    Raised by the checks every page starts with (`admin_session`, `checked_form`, the seller pages' session) and
    answered by the pages' routers (dashboard.page_refused)."""

    def __init__(self, response: Response[Any]) -> None:
        super().__init__("page refused")
        self.response = response


async def admin_session(request: Request[Any, Any, Any]) -> tuple[User, str]:
    """(admin, token) of the admin cookie; otherwise PageRefused: to sign-in (no or a dead session), or 403."""
    from .dashboard import CLEARED_COOKIE, COOKIE, LOGIN_URL, _forbidden, _redirect, _session

    session = await _session(request)
    if session is None:
        raise PageRefused(_redirect(LOGIN_URL, CLEARED_COOKIE if COOKIE in request.cookies else None))
    if session[0].role is not Role.ADMIN:
        raise PageRefused(_forbidden(session[1]))
    return session


@get("/sessions")
async def sessions_page(
    request: Request[Any, Any, Any],
    find_sessions: NamedDependency[FindSessions],
    now: NamedDependency[Callable[[], datetime]],
) -> Response[Any]:
    """Search sessions by trace id, order id, e-mail or user id; the list, most recently active first."""
    from .dashboard import _page, csrf_token

    user, token = await admin_session(request)
    query = request.query_params
    form = {
        name: str(query.get(name) or "").strip()[:_MAX_INPUT]
        for name in ("trace_id", "order_id", "email", "user_id", "cursor")
    }
    errors_only = query.get("errors") == "1"
    error = None
    period: Period | None = None
    items: list[Any] = []
    next_cursor = None
    if form["trace_id"] and not _TRACE_ID.match(form["trace_id"]):
        error = "A trace id is 32 hexadecimal characters."
    elif any("\x00" in value for value in form.values()):
        # The e-mail reaches the users table as typed: PostgreSQL text cannot hold a NUL (bad input, not a 500).
        error = "A search field must not contain a NUL character."
    else:
        period = parse_period(None, None, now())
        if not any(form[name] for name in ("trace_id", "order_id", "email", "user_id")) and not errors_only:
            # Unfiltered, every entry of the period is grouped: the last day keeps the page quick on a big table.
            period = Period(period.end - UNFILTERED_PERIOD, period.end)
        criteria = SessionFilter(
            user_id=form["user_id"] or None,
            order_id=form["order_id"] or None,
            trace_id=form["trace_id"].lower() or None,
            has_errors=True if errors_only else None,
            start=period.start,
            end=period.end,
        )
        try:
            page = await find_sessions(criteria, 50, form["cursor"] or None, email=form["email"] or None)
        except (InvalidCursor, ValidationFailed):
            error = "That page of results cannot be shown any more; search again."
        else:
            items, next_cursor = list(page.items), page.next_cursor
    return _page(
        "sessions.html",
        400 if error else 200,
        period_label="the last 24 hours"
        if period is not None and period.end - period.start == UNFILTERED_PERIOD
        else "the last 30 days",
        email=user.email,
        csrf_token=csrf_token(token),
        form=form,
        errors_only=errors_only,
        error=error,
        items=items,
        next_cursor=next_cursor,
    )


@get("/sessions/{session_id:str}")
async def session_page(
    request: Request[Any, Any, Any],
    session_id: FromPath[str],
    session_timeline: NamedDependency[SessionTimeline],
    session_links: NamedDependency[SessionLinks],
) -> Response[Any]:
    """One session's timeline."""
    from .dashboard import _page, csrf_token, signed_in_message

    user, token = await admin_session(request)
    try:
        timeline = await session_timeline(session_id)
    except NotFound as exc:
        return signed_in_message(token, 404, title="No such session", message=exc.detail)
    rows = timeline_rows(timeline, session_links)
    return _page(
        "session.html",
        200,
        email=user.email,
        csrf_token=csrf_token(token),
        timeline=timeline,
        rows=rows,
        failures=sum(1 for row in rows if row.failing),
    )
