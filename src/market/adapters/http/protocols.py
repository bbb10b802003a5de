"""uvicorn's HTTP protocols, answering a request they cannot parse the way the app answers everything else.

A request line or header the parser refuses (a control character in a header, a method token it does not
know, a broken request line) never reaches the app: uvicorn answers it itself with a plain-text 400 and no
`traceresponse`. Here that answer is the contract's: a `malformed-request` problem+json with a `trace_id`,
the same id in `traceresponse`, and an issued `X-Session-Id`. The edge middleware never sees the request, so the
SERVER span and the access line that make that id findable are made here. The connection is closed, as uvicorn
does."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind
from uvicorn.protocols.http.h11_impl import H11Protocol

from market.telemetry import names
from market.telemetry.asgi import trace_ids

from .problems import MALFORMED, PROBLEM_JSON

access_log = logging.getLogger("market.access")

_DETAIL = (
    "The request could not be read as HTTP: its request line or a header is malformed (for instance a control"
    " character in a header value, or an unknown method). Nothing was done."
)


def malformed_request_response(
    default_headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None = None
) -> bytes:
    """The whole HTTP/1.1 response to a request that could not be parsed, with its SERVER span (named `_OTHER`, as
    the contract names every span of a method outside the standard set) and its access line, both under the id it
    quotes."""
    session_id = secrets.token_hex(16)
    attributes: dict[str, Any] = {
        names.HTTP_REQUEST_METHOD: names.HTTP_METHOD_OTHER,
        names.HTTP_RESPONSE_STATUS_CODE: 400,
        names.SESSION_ID: session_id,
    }
    if client:
        attributes[names.CLIENT_ADDRESS] = client[0]
    span = trace.get_tracer(names.INSTRUMENTATION_SCOPE).start_span(
        names.HTTP_METHOD_OTHER, kind=SpanKind.SERVER, attributes=attributes
    )
    if not span.get_span_context().is_valid:
        # SDK disabled: still a reference to quote, and on the access line.
        ids = secrets.token_hex(24)
        span = NonRecordingSpan(SpanContext(int(ids[:32], 16), int(ids[32:], 16), is_remote=False))
    with trace.use_span(span, end_on_exit=True):  # the log line takes its trace and span ids from here
        access_log.info(
            "malformed request 400",
            extra={
                names.HTTP_REQUEST_METHOD: names.HTTP_METHOD_OTHER,
                names.HTTP_RESPONSE_STATUS_CODE: 400,
                names.CLIENT_ADDRESS: client[0] if client else None,
            },
        )
    trace_id, span_id, flags = trace_ids(span)
    body = json.dumps(
        {
            "type": MALFORMED.uri,
            "title": MALFORMED.title,
            "status": 400,
            "detail": _DETAIL,
            "trace_id": trace_id,
        }
    ).encode()
    headers = [
        *default_headers,
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"traceresponse", f"00-{trace_id}-{span_id}-{flags}".encode()),
        (b"x-session-id", session_id.encode()),
        (b"connection", b"close"),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 400 Bad Request\r\n" + head + b"\r\n" + body


class _MalformedRequestProblem:
    """Replaces uvicorn's plain-text 400 of both protocols."""

    server_state: Any
    transport: Any
    client: tuple[str, int] | None

    def send_400_response(self, msg: str) -> None:
        self.transport.write(malformed_request_response(self.server_state.default_headers, self.client))
        self.transport.close()


class MarketH11Protocol(_MalformedRequestProblem, H11Protocol):
    """h11 (where httptools is missing) with the malformed-request problem."""


def http_protocol() -> type[asyncio.Protocol]:
    """httptools, the production parser, when it is installed (with market, but for a few platforms); else h11."""
    try:
        from ._httptools_protocol import MarketHttpToolsProtocol
    except ImportError:
        return MarketH11Protocol
    return MarketHttpToolsProtocol
