"""Stand-ins for an OpenTelemetry collector and for Sentry, speaking the real protocols on 127.0.0.1.

- `OtlpHttpReceiver`: OTLP/HTTP (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`), protobuf bodies decoded with
  `opentelemetry.proto`, gzip/deflate undone.
- `OtlpGrpcReceiver`: OTLP/gRPC, a grpcio server implementing the collector's Trace, Metrics and Logs services.
- `SentryReceiver`: reached through a real DSN (`http://publickey@127.0.0.1:PORT/1`); takes
  `POST /api/1/envelope/` and `/api/1/store/`, undoes gzip/deflate/br and splits envelopes into items.

Each records every payload it received (decoded, and as raw decompressed bytes for secret hunting) and can be
told to misbehave with `behave(...)`: `OK`, `ERROR` (HTTP 500 / gRPC UNAVAILABLE), `RATE_LIMITED` (HTTP 429
with `Retry-After` / gRPC RESOURCE_EXHAUSTED) or `HANG` (accept the request and never answer, until stopped).
A receiver that is down refuses connections: `refused_endpoint()` names a port nobody listens on.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

try:  # Sentry compresses with brotli when it is installed, gzip otherwise
    import brotli  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

T = TypeVar("T")


class Behaviour(Enum):
    OK = "ok"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    HANG = "hang"


def refused_endpoint() -> int:
    """A port on 127.0.0.1 that was free a moment ago and that nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(probe: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def decompress(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        if brotli is None:
            raise ValueError("brotli body but no brotli module to read it")
        return brotli.decompress(body)  # type: ignore[no-any-return]
    return body


# --- OTLP: decoded views ------------------------------------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def _hex(raw: bytes) -> str:
    return raw.hex()


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector got it, with its resource and instrumentation scope."""

    name: str
    kind: int
    """`opentelemetry.proto.trace.v1.trace_pb2.Span.SpanKind` value: 1 internal, 2 server, 3 client."""
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    """0 unset, 1 ok, 2 error."""
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]
    """(trace_id, span_id, attributes) of each link."""
    resource: dict[str, Any]
    scope: str

    def event(self, name: str) -> dict[str, Any] | None:
        return next((attrs for event_name, attrs in self.events if event_name == name), None)


@dataclass(frozen=True)
class ReceivedPoint:
    """One metric data point, flattened with its metric's name, unit and kind."""

    name: str
    unit: str
    kind: str
    """`sum`, `gauge` or `histogram`."""
    attributes: dict[str, Any]
    value: float
    """The sum's or gauge's value; a histogram's count."""
    histogram_sum: float | None
    resource: dict[str, Any]


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=span.kind,
                        trace_id=_hex(span.trace_id),
                        span_id=_hex(span.span_id),
                        parent_span_id=_hex(span.parent_span_id),
                        attributes=attributes(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        events=[(e.name, attributes(e.attributes)) for e in span.events],
                        links=[
                            (_hex(k.trace_id), _hex(k.span_id), attributes(k.attributes)) for k in span.links
                        ],
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return found


def points_of(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[ReceivedPoint]:
    found = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    for p in getattr(metric, kind).data_points:
                        value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        found.append(
                            ReceivedPoint(
                                metric.name,
                                metric.unit,
                                kind,
                                attributes(p.attributes),
                                value,
                                None,
                                resource,
                            )
                        )
                elif kind == "histogram":
                    for p in metric.histogram.data_points:
                        found.append(
                            ReceivedPoint(
                                metric.name,
                                metric.unit,
                                kind,
                                attributes(p.attributes),
                                p.count,
                                p.sum,
                                resource,
                            )
                        )
    return found


@dataclass
class _Recorded:
    """What any receiver keeps: decoded requests per signal and every raw (decompressed) body."""

    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    logs: list[logs_service_pb2.ExportLogsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    attempts: int = 0
    """Requests that arrived, answered or not."""


class _OtlpReceiverBase:
    """Shared by both OTLP receivers: behaviour switch, thread-safe records and the decoded views."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorded = _Recorded()
        self._behaviour = Behaviour.OK
        self._released = threading.Event()  # set on stop: hung requests return
        self.port = 0

    def behave(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviour = behaviour

    def _arrived(self, raw: bytes) -> Behaviour:
        with self._lock:
            self._recorded.attempts += 1
            self._recorded.raw.append(raw)
            return self._behaviour

    def _keep(self, request: Message) -> None:
        with self._lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self._recorded.traces.append(request)
            elif isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self._recorded.metrics.append(request)
            else:
                self._recorded.logs.append(request)  # type: ignore[arg-type]

    @property
    def attempts(self) -> int:
        with self._lock:
            return self._recorded.attempts

    def raw_payloads(self) -> list[bytes]:
        with self._lock:
            return list(self._recorded.raw)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self._recorded.traces)
        return [span for request in requests for span in spans_of(request)]

    def points(self) -> list[ReceivedPoint]:
        return [point for request in self.metric_requests() for point in points_of(request)]

    def metric_requests(self) -> list[metrics_service_pb2.ExportMetricsServiceRequest]:
        """Each export as received, for what `points` leaves out (exemplars, temporality)."""
        with self._lock:
            return list(self._recorded.metrics)

    def log_records(self) -> list[dict[str, Any]]:
        with self._lock:
            requests = list(self._recorded.logs)
        return [
            {
                "body": any_value(record.body),
                "attributes": attributes(record.attributes),
                "trace_id": record.trace_id.hex(),
            }
            for request in requests
            for resource_logs in request.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    def wait_for_spans(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0, what: str = "spans"
    ) -> list[ReceivedSpan]:
        def probe() -> list[ReceivedSpan] | None:
            spans = self.spans()
            return spans if predicate(spans) else None

        return wait_until(probe, timeout, what)

    def wait_for_points(
        self, predicate: Callable[[list[ReceivedPoint]], bool], timeout: float = 15.0, what: str = "points"
    ) -> list[ReceivedPoint]:
        def probe() -> list[ReceivedPoint] | None:
            points = self.points()
            return points if predicate(points) else None

        return wait_until(probe, timeout, what)


# --- OTLP/HTTP ----------------------------------------------------------------------------------------------

_OTLP_HTTP_PATHS: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hung handler must not hold `stop()`

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the exporter giving up on a hung request resets the connection: expected here


class _HttpReceiverBase:
    """A threaded http.server on 127.0.0.1 whose handler calls `self._handle`."""

    _server: _QuietServer | None = None
    port: int
    _released: threading.Event

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    def start(self) -> Any:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver._handle(self, body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._released.clear()
        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _answer(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


class OtlpHttpReceiver(_OtlpReceiverBase, _HttpReceiverBase):
    """OTLP/HTTP with protobuf bodies. Point `OTEL_EXPORTER_OTLP_ENDPOINT` at `endpoint`."""

    retry_after_s = 1

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raw = decompress(body, handler.headers.get("content-encoding"))
        behaviour = self._arrived(raw)
        if behaviour is Behaviour.HANG:
            self._released.wait()
            handler.close_connection = True
            return
        if behaviour is Behaviour.ERROR:
            _answer(handler, 500, b"collector failing on purpose", "text/plain")
            return
        if behaviour is Behaviour.RATE_LIMITED:
            _answer(handler, 429, b"slow down", "text/plain", Retry_After=str(self.retry_after_s))
            return
        kinds = _OTLP_HTTP_PATHS.get(handler.path)
        if kinds is None:
            _answer(handler, 404, b"unknown signal", "text/plain")
            return
        request_type, response_type = kinds
        request = request_type()
        request.ParseFromString(raw)
        self._keep(request)
        _answer(handler, 200, response_type().SerializeToString(), "application/x-protobuf")


# --- OTLP/gRPC ----------------------------------------------------------------------------------------------


class OtlpGrpcReceiver(_OtlpReceiverBase):
    """OTLP/gRPC (insecure). Point `OTEL_EXPORTER_OTLP_ENDPOINT` at `endpoint` with protocol `grpc`."""

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, request: Message, context: grpc.ServicerContext, response: Message) -> Message:
        behaviour = self._arrived(request.SerializeToString())
        if behaviour is Behaviour.HANG:
            self._released.wait()
            context.abort(grpc.StatusCode.UNAVAILABLE, "receiver stopped")
        if behaviour is Behaviour.ERROR:
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector failing on purpose")
        if behaviour is Behaviour.RATE_LIMITED:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        self._keep(request)
        return response

    def start(self) -> OtlpGrpcReceiver:
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._serve(request, context, trace_service_pb2.ExportTraceServiceResponse())

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._serve(request, context, metrics_service_pb2.ExportMetricsServiceResponse())

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._serve(request, context, logs_service_pb2.ExportLogsServiceResponse())

        self._released.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="otlp-grpc"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None


# --- Sentry -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeItem:
    type: str
    headers: dict[str, Any]
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: list[EnvelopeItem]


def parse_envelope(data: bytes) -> Envelope:
    """Sentry's envelope format: a JSON header line, then per item a JSON header line and a payload (of
    `length` bytes when given, else up to the next newline)."""
    header_line, _, rest = data.partition(b"\n")
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        if not item_header_line.strip():
            continue
        item_headers = json.loads(item_header_line)
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        items.append(EnvelopeItem(item_headers.get("type", ""), item_headers, payload))
    return Envelope(json.loads(header_line) if header_line.strip() else {}, items)


class SentryReceiver(_HttpReceiverBase):
    """Sentry's ingestion endpoints for project 1. Use `dsn` as SENTRY_DSN."""

    retry_after_s = 60

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour = Behaviour.OK
        self._released = threading.Event()
        self._envelopes: list[Envelope] = []
        self._raw: list[bytes] = []
        self._attempts = 0
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def behave(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviour = behaviour

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raw = decompress(body, handler.headers.get("content-encoding"))
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self._attempts += 1
            behaviour = self._behaviour
            if behaviour is Behaviour.OK:
                self._raw.append(raw)
        if behaviour is Behaviour.HANG:
            self._released.wait()
            handler.close_connection = True
            return
        if behaviour is Behaviour.ERROR:
            _answer(handler, 500, b'{"detail":"failing on purpose"}', "application/json")
            return
        if behaviour is Behaviour.RATE_LIMITED:
            _answer(
                handler,
                429,
                b'{"detail":"slow down"}',
                "application/json",
                Retry_After=str(self.retry_after_s),
            )
            return
        if path == "/api/1/envelope/":
            envelope = parse_envelope(raw)
        elif path == "/api/1/store/":  # the legacy endpoint: one bare event
            envelope = Envelope({}, [EnvelopeItem("event", {"type": "event"}, raw)])
        else:
            _answer(handler, 404, b'{"detail":"unknown endpoint"}', "application/json")
            return
        with self._lock:
            self._envelopes.append(envelope)
        event_id = envelope.headers.get("event_id", "")
        _answer(handler, 200, json.dumps({"id": event_id}).encode(), "application/json")

    @property
    def attempts(self) -> int:
        with self._lock:
            return self._attempts

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes)

    def raw_payloads(self) -> list[bytes]:
        with self._lock:
            return list(self._raw)

    def items(self, item_type: str | None = None) -> Iterator[EnvelopeItem]:
        for envelope in self.envelopes():
            for item in envelope.items:
                if item_type is None or item.type == item_type:
                    yield item

    def events(self) -> list[dict[str, Any]]:
        """Error and message events (item type `event`)."""
        return [item.json() for item in self.items("event")]

    def events_of_trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [
            e for e in self.events() if e.get("contexts", {}).get("trace", {}).get("trace_id") == trace_id
        ]

    def wait_for_events(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0, what: str = "events"
    ) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            events = self.events()
            return events if predicate(events) else None

        return wait_until(probe, timeout, what)
