"""Who is asking, for the records a request writes: its session, its trace and (once authenticated) its
user. The edge middleware opens it, authentication fills in the user, the analytics log reads it (through
`identity`, which bootstrap hands to it)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from opentelemetry import trace


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


def identity() -> tuple[str | None, str | None, str | None]:
    """(session id, user id, trace id) of the work in progress, for the records it writes: the request's, or
    outside a request (background work, the CLI) no session nor user and the current span's trace. Bound by
    bootstrap into the analytics log, which does not read this context itself."""
    request = current()
    if request is not None:
        return request.session_id, request.user_id, request.trace_id
    context = trace.get_current_span().get_span_context()
    return None, None, format(context.trace_id, "032x") if context.is_valid else None
