"""Who is asking, for the records a request writes: its session, its trace and (once authenticated) its
user. The edge middleware opens it, authentication fills in the user, the analytics log reads it."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    session_id: str
    trace_id: str
    user_id: str | None = None
    problem_type: str | None = None
    """The problem `type` of a 4xx/5xx answer (session replay)."""
    sentry_event_id: str | None = None
    """The Sentry event sent for this request, if any (session replay)."""


_current: ContextVar[RequestContext | None] = ContextVar("market_request_context", default=None)


def current() -> RequestContext | None:
    """The context of the request being served; None in background work and the CLI."""
    return _current.get()


def begin(session_id: str, trace_id: str) -> Token[RequestContext | None]:
    return _current.set(RequestContext(session_id, trace_id))


def end(token: Token[RequestContext | None]) -> None:
    _current.reset(token)
