"""Session replay: find a session, read its timeline, take the events its own client reports, and forget
what is past retention."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from market.domain.errors import NotFound, PermissionDenied, RateLimited
from market.domain.sessions import (
    SessionFilter,
    SessionSummary,
    Timeline,
    parse_client_events,
    valid_session_id,
)
from market.domain.users import normalise_email
from market.domain.validation import parse_id

from .ports import Clock, Page, SessionRecorder, SessionStore, UserRepository

UNKNOWN_SESSION = "No session with this id is known (it may be older than the retention period)."


async def find_sessions(
    criteria: SessionFilter,
    limit: int,
    cursor: str | None,
    *,
    email: str | None = None,
    store: SessionStore,
    users: UserRepository,
) -> Page[SessionSummary]:
    """Sessions matching every criterion. An e-mail is turned into its user's id here (the timeline keeps
    ids, never e-mails); an unknown e-mail matches nothing."""
    if email is not None:
        user = await users.get_by_email(normalise_email(email))
        if user is None or (criteria.user_id is not None and parse_id(criteria.user_id) != user.id):
            return Page([], None)
        criteria = SessionFilter(
            user_id=user.id,
            order_id=criteria.order_id,
            trace_id=criteria.trace_id,
            has_errors=criteria.has_errors,
            start=criteria.start,
            end=criteria.end,
        )
    return await store.find(criteria, limit, cursor)


async def session_timeline(session_id: str, *, store: SessionStore) -> Timeline:
    """The whole story of one session; NotFound when nothing is known of it."""
    timeline = await store.timeline(session_id) if valid_session_id(session_id) else None
    if timeline is None:
        raise NotFound(UNKNOWN_SESSION)
    return timeline


async def add_client_events(
    session_id: str,
    body: Any,
    *,
    caller_session: str | None,
    trace_id: str | None,
    user_id: str | None,
    recorder: SessionRecorder,
    clock: Clock,
) -> int:
    """Queue the events a client reports for its own session (the `X-Session-Id` it sent). Another session's
    id is PermissionDenied; an invalid body is ValidationFailed; a full buffer is RateLimited (try again in a
    second), never a wait. Returns how many events were taken."""
    if caller_session is None or caller_session != session_id:
        raise PermissionDenied(
            "Events may only be added to your own session: send its id as the X-Session-Id header."
        )
    events = parse_client_events(
        body, session_id=session_id, now=clock.now(), trace_id=trace_id, user_id=user_id
    )
    if not recorder.record_events(events):
        raise RateLimited(1, "The session recorder is busy; send these events again in a moment.")
    return len(events)


async def prune_sessions(retention: timedelta, *, store: SessionStore, clock: Clock) -> int:
    """Forget timeline entries older than the retention period; returns how many were deleted."""
    return await store.prune(clock.now() - retention)


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

FindSessions = Callable[..., Awaitable[Page[SessionSummary]]]
"""(criteria, limit, cursor, *, email=None)"""
SessionTimeline = Callable[[str], Awaitable[Timeline]]
AddClientEvents = Callable[..., Awaitable[int]]
"""(session id, body, *, caller_session, trace_id, user_id)"""
