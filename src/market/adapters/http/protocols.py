"""uvicorn's HTTP protocols, answering a request they cannot parse the way the app answers everything else.

A request line or header the parser refuses (a control character in a header, a method token it does not
know, a broken request line) never reaches the app: uvicorn answers it itself with a plain-text 400 and no
`traceresponse`. Here that answer is the contract's: a `malformed-request` problem+json with a `trace_id`
(a fresh id, since no trace was started: one to quote, like every other error's), the same id in
`traceresponse`, and an issued `X-Session-Id`. The connection is closed, as uvicorn does."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .problems import MALFORMED, PROBLEM_JSON

_DETAIL = (
    "The request could not be read as HTTP: its request line or a header is malformed (for instance a control"
    " character in a header value, or an unknown method). Nothing was done."
)


def malformed_request_response(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole HTTP/1.1 response to a request that could not be parsed."""
    ids = secrets.token_hex(40)
    trace_id, span_id, session_id = ids[:32], ids[32:48], ids[48:]
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
        (b"traceresponse", f"00-{trace_id}-{span_id}-00".encode()),
        (b"x-session-id", session_id.encode()),
        (b"connection", b"close"),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 400 Bad Request\r\n" + head + b"\r\n" + body


class _MalformedRequestProblem:
    """Replaces uvicorn's plain-text 400 of both protocols."""

    server_state: Any
    transport: Any

    def send_400_response(self, msg: str) -> None:
        self.transport.write(malformed_request_response(self.server_state.default_headers))
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
