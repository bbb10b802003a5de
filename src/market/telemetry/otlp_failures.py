"""A failed OTLP export must not hold on to what it failed to send.

The SDK's HTTP transport (opentelemetry-exporter-http-transport) returns a failed request's exception in its
result. The exception's traceback reaches, through the frames' callers, the exporter's `_submit` frame, whose
`result` holds the exception again: a reference cycle. Every failed attempt (three or four per batch while the
collector is down) leaves one, and through the callers' frames it keeps the encoded request body and the whole
batch of spans (≈ 1 MB per 512 spans) until a full garbage collection, which a service that froze its start-up
objects and raised the thresholds (bootstrap/app.py) runs rarely: RSS grew by ≈ 6 MB a minute at 3 000 req/s with
the collector down. Nothing reads those tracebacks (the exporter logs the error's text and counts its type), so
they are dropped as the result comes back, and the frames go with the attempt.

The gRPC exporters make the same cycle once per export: the last `RpcError` is kept in the export's result, and its
traceback holds the `_export` frame that holds the result. There the error loses its traceback as the export ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

Exporter = TypeVar("Exporter")


def _drop_tracebacks(error: BaseException) -> None:
    """`error` and every exception it leads to (cause, context, arguments, attributes) without their tracebacks."""
    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += (current.__cause__, current.__context__, *current.args, *vars(current).values())


class TracebackFreeTransport(BaseHTTPTransport):
    """The exporter's own transport; a failed request's exception comes back without its traceback."""

    def __init__(self, inner: BaseHTTPTransport) -> None:
        self._inner = inner

    def request(self, method: str, url: str, **kwargs: Any) -> BaseHTTPResult:
        result = self._inner.request(method, url, **kwargs)
        if result.error is not None:
            _drop_tracebacks(result.error)
        return result

    def close(self) -> None:
        self._inner.close()

    def is_connection_error(self, exception: Exception | None) -> bool:
        return self._inner.is_connection_error(exception)


class _TracebackFreeResults:
    """The exporter's own metrics (`export_operation`), the result's error without its traceback at the end."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @contextmanager
    def export_operation(self, num_items: int) -> Iterator[Any]:
        with self._inner.export_operation(num_items) as result:
            try:
                yield result
            finally:
                if isinstance(result.error, BaseException):
                    _drop_tracebacks(result.error)


def without_retained_failures(exporter: Exporter) -> Exporter:
    """`exporter` (an SDK OTLP exporter: spans, metrics or logs) with its failures let go of: over HTTP, its
    transport wrapped as above; over gRPC, its export's result."""
    client = getattr(exporter, "_client", None)
    transport = getattr(client, "_transport", None)
    if isinstance(transport, BaseHTTPTransport):
        if not isinstance(transport, TracebackFreeTransport):
            client._transport = TracebackFreeTransport(transport)  # type: ignore[union-attr]
        return exporter
    metrics = getattr(exporter, "_metrics", None)
    if hasattr(metrics, "export_operation") and not isinstance(metrics, _TracebackFreeResults):
        exporter._metrics = _TracebackFreeResults(metrics)  # type: ignore[attr-defined]
    return exporter
