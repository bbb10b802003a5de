"""The edge of every HTTP request: one SERVER span named by route template, the W3C `traceresponse` header,
and the `X-Session-Id` session.

Written for this service instead of the generic ASGI instrumentation, which does its costly work on every request
even when the request is not sampled (figures: benchmarks/README.md) and names spans after raw paths.
"""

from __future__ import annotations

import re
import secrets
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)

from market.domain.sessions import SESSION_ID

from . import names, request_context
from .logs import AccessLog
from .metrics import DURATION_BUCKETS_S, NO_EXEMPLAR
from .sessions import RECORDED_PREFIX, SessionRecording

_VALID_SESSION = re.compile(SESSION_ID.pattern.encode())  # the domain's rule, on the header's raw bytes

Scope = dict[str, Any]


def _headers_getter(carrier: dict[str, str], key: str) -> list[str] | None:
    value = carrier.get(key)
    return [value] if value is not None else None


class _Getter:
    """Reads propagation headers from the dict built once per request."""

    get = staticmethod(_headers_getter)

    @staticmethod
    def keys(carrier: dict[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _Getter()


def trace_ids(span: trace.Span) -> tuple[str, str, str]:
    """(trace_id, span_id, flags) as lower-case hex, for headers, problem bodies and logs."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), format(ctx.trace_flags, "02x")


def known_method(method: str) -> str:
    """The method as telemetry records it: itself when standard, else `_OTHER` (bounded cardinality)."""
    return method if method in names.HTTP_METHODS else names.HTTP_METHOD_OTHER


# A made-up method is kept beside `_OTHER` for the curious, but not at any length.
_MAX_ORIGINAL_METHOD = 32

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def span_context_from_traceparent(traceparent: str | None) -> SpanContext | None:
    """A remote span context from a W3C `traceparent`, for span links; None when absent or malformed."""
    match = _TRACEPARENT.match(traceparent or "")
    if match is None:
        return None
    context = SpanContext(
        trace_id=int(match[1], 16),
        span_id=int(match[2], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
    )
    return context if context.is_valid else None


class DurationSeries:
    """The attributes of `http.server.request.duration` per series, built once: a request records the same dict
    as every other request of its (method, status, scheme, route), instead of building one (the SDK copies
    what it keeps). A 5xx carries `error.type`, its status code as a string (HTTP semantic conventions)."""

    MAX_SERIES = 4096
    """Past this many (a scanner's odd statuses), the cache starts over; the dicts stay right either way."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, str, str | None], dict[str, Any]] = {}

    def attributes(self, method: str, status_code: int, scheme: str, template: str | None) -> dict[str, Any]:
        key = (method, status_code, scheme, template)
        found = self._cache.get(key)
        if found is None:
            found = {
                names.HTTP_REQUEST_METHOD: method,
                names.HTTP_RESPONSE_STATUS_CODE: status_code,
                names.URL_SCHEME: scheme,
            }
            if template:
                found[names.HTTP_ROUTE] = template
            if status_code >= 500:
                found[names.ERROR_TYPE] = str(status_code)
            if len(self._cache) >= self.MAX_SERIES:
                self._cache.clear()
            self._cache[key] = found
        return found


class ExemplarPacer:
    """Whether a measurement should offer its trace as an exemplar: the first of each (series, bucket), then
    at most one per `interval_s`. Prometheus keeps one exemplar per bucket and scrapes every 15 s or so; the
    SDK's reservoir keeps the last offer per bucket; offering every sampled request (each offer builds an
    exemplar; there were two readers then) cost every request a few µs of CPU for links nobody could see."""

    MAX_KEYS = 16384

    def __init__(self, bounds: Sequence[float], interval_s: float = 1.0) -> None:
        self._bounds = tuple(bounds)
        self._interval_s = interval_s
        self._last: dict[tuple[int, int], float] = {}

    def due(self, series: object, value: float, now: float) -> bool:
        """`series`: the attributes object of the series (DurationSeries hands out one per series; an id
        reused after the cache starts over only shifts the pace of one bucket)."""
        key = (id(series), bisect_left(self._bounds, value))
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            return False
        if last is None and len(self._last) >= self.MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        return True


def _exemplar_of(trace_id: str, span_id: str) -> otel_context.Context:
    """A context whose span offers (`trace_id`, `span_id`) as an exemplar: the histograms offer the ids of a
    sampled span only."""
    ids = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED)
    return trace.set_span_in_context(trace.NonRecordingSpan(ids))


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _with_head(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """An `Allow` header listing GET also lists HEAD, which this middleware answers wherever GET is."""
    name, value = header
    if name.lower() != b"allow":
        return header
    methods = [method.strip() for method in value.split(b",")]
    if b"GET" in methods and b"HEAD" not in methods:
        methods.insert(methods.index(b"GET") + 1, b"HEAD")
    return name, b", ".join(methods)


class ServerSpanMiddleware:
    """Wraps the whole Litestar ASGI handler (outside its exception handling), so that every response,
    including 404s of unknown routes and 500s, is inside the span and carries `traceresponse`."""

    def __init__(
        self,
        app: Any,
        tracer: Tracer,
        duration: Histogram | None = None,
        access_log: AccessLog | None = None,
        sessions: SessionRecording | None = None,
        *,
        exemplars_without_spans: bool = False,
    ) -> None:
        self.app = app
        self._exemplars_without_spans = exemplars_without_spans
        """No span is recorded anywhere (no exporter): a request's trace id still names it in its log line,
        problem body, session replay and Sentry event, so unsampled requests offer it as the exemplar too."""
        self.sessions = sessions
        """Session replay: each API request's compact entry goes to this buffer (None: not recorded)."""
        self.tracer = tracer
        self.duration = duration
        # One JSON line per request, written here rather than by uvicorn: with the request's trace and span
        # ids, without the query string (search terms are user input), and cheaper.
        self.access_log = access_log or AccessLog()
        # With the SDK disabled (OTEL_SDK_DISABLED) its tracer is a no-op: no span to start, put in the context
        # and end on every request (≈ 1 % of a browse request's instructions).
        self._tracing = not isinstance(tracer, NoOpTracer)
        self._series = DurationSeries()
        self._exemplars = ExemplarPacer(DURATION_BUCKETS_S)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        carrier: dict[str, str] = {}
        session_id = user_agent = None
        for key, value in scope["headers"]:
            if key == b"x-session-id":
                session_id = value
            elif key == b"user-agent":
                user_agent = value.decode("latin-1")
            elif key in (b"traceparent", b"tracestate"):
                carrier[key.decode()] = value.decode("latin-1")
        session = (
            session_id.decode() if session_id and _VALID_SESSION.match(session_id) else secrets.token_hex(16)
        )
        original_method = scope["method"]
        method = known_method(original_method)
        attributes = {
            names.HTTP_REQUEST_METHOD: method,
            names.URL_PATH: scope["path"],
            names.URL_SCHEME: scope.get("scheme", "http"),
            names.SESSION_ID: session,
        }
        if method != original_method:
            attributes[names.HTTP_REQUEST_METHOD_ORIGINAL] = original_method[:_MAX_ORIGINAL_METHOD]
        if user_agent:
            attributes[names.USER_AGENT_ORIGINAL] = user_agent
        client = scope.get("client")
        if client:
            attributes[names.CLIENT_ADDRESS] = client[0]

        started = time.perf_counter()
        started_wall = time.time()
        if self._tracing:
            parent = extract(carrier, getter=_GETTER) if carrier else None
            span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        else:
            span = INVALID_SPAN
        if span.get_span_context().is_valid:
            trace_id, span_id, flags = trace_ids(span)
        else:  # SDK disabled: still give clients a reference to quote, in their own trace if they sent one
            ids = secrets.token_hex(24)
            trace_id, span_id, flags = ids[:32], ids[32:], "00"
            incoming = span_context_from_traceparent(carrier.get("traceparent")) if carrier else None
            if incoming is not None:
                trace_id = format(incoming.trace_id, "032x")
        state = scope.setdefault("state", {})
        state["trace_id"] = trace_id
        state["span_id"] = span_id
        state["session_id"] = session
        state["head"] = original_method == "HEAD"  # answered as a GET (below); the app may tell them apart
        extra_headers = [
            (b"traceresponse", f"00-{trace_id}-{span_id}-{flags}".encode()),
            (b"x-session-id", session.encode()),
        ]
        status_code = 500

        head = original_method == "HEAD"

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = [*message.get("headers", ()), *extra_headers]
                if status_code == 405 or original_method == "OPTIONS":
                    headers = [_with_head(header) for header in headers]
                message["headers"] = headers
            elif head and message.get("body"):
                message = {**message, "body": b""}  # Content-Length stays the GET's, as HEAD wants
            await send(message)

        span_context = token = None
        if self._tracing:
            span_context = trace.set_span_in_context(span)
            token = otel_context.attach(span_context)
        # HEAD is GET without the body (RFC 9110 9.3.2: every general-purpose server supports both): the app
        # answers a GET, its body is not sent (above), and telemetry and logs record HEAD.
        app_scope = {**scope, "method": "GET"} if head else scope
        request = request_context.begin(session, trace_id)
        context = request_context.current()
        try:
            await self.app(app_scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            template = app_scope.get("path_template")
            if self.access_log.enabled():
                fields = {
                    names.HTTP_REQUEST_METHOD: method,
                    names.URL_PATH: scope["path"],
                    names.HTTP_ROUTE: template,
                    names.HTTP_RESPONSE_STATUS_CODE: status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    names.CLIENT_ADDRESS: client[0] if client else None,
                }
                if method != original_method:
                    fields[names.HTTP_REQUEST_METHOD_ORIGINAL] = attributes[
                        names.HTTP_REQUEST_METHOD_ORIGINAL
                    ]
                self.access_log.write(f"{method} {scope['path']} {status_code}", trace_id, span_id, fields)
            if (
                self.sessions is not None
                and context is not None
                and scope["path"].startswith(RECORDED_PREFIX)
            ):
                self.sessions.record_request(
                    session,
                    started_wall,
                    method,
                    template,
                    status_code,
                    elapsed,
                    trace_id,
                    context.problem_type if status_code >= 400 else None,
                    context.sentry_event_id,
                    context.user_id,
                )
            request_context.end(request)
            if token is not None:
                otel_context.detach(token)
                if span.is_recording():  # an unsampled span would ignore all of this
                    finish: dict[str, Any] = {names.HTTP_RESPONSE_STATUS_CODE: status_code}
                    if template:
                        span.update_name(f"{method} {template}")
                        finish[names.HTTP_ROUTE] = template
                    # error.type: for a server, a 5xx is the error (the status code as a string, per the HTTP
                    # semantic conventions); a 4xx is the client's.
                    if status_code >= 500:
                        finish[names.ERROR_TYPE] = str(status_code)
                        span.set_status(Status(StatusCode.ERROR))
                    span.set_attributes(finish)  # one call, one lock
                    span.end()
            if self.duration is not None:
                series = self._series.attributes(method, status_code, attributes[names.URL_SCHEME], template)
                # In the request's context, so that a sampled request leaves its trace id as an exemplar, at
                # most once a second per series and bucket (the exposition shows the latest one per bucket).
                # Sampled first: an unsampled request offers none, so it must not use up the bucket's turn.
                sampled = span.get_span_context().trace_flags.sampled
                offer = NO_EXEMPLAR
                if (sampled or self._exemplars_without_spans) and self._exemplars.due(
                    series, elapsed, started + elapsed
                ):
                    offer = span_context if sampled else _exemplar_of(trace_id, span_id)
                self.duration.record(elapsed, series, context=offer)
