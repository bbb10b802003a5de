"""What the request path caches so that telemetry at 100 % sampling costs less (benchmarks/README.md,
telemetry_instructions.py): the request-duration series' attributes, the DB statements' names and attributes,
the pace of exemplar offers, and the context that offers none. Against the real OpenTelemetry SDK (in-memory
reader and exporter), no server."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer

from market.adapters.telemetry.db import DbSpans
from market.telemetry import names
from market.telemetry.asgi import DurationSeries, ExemplarPacer, ServerSpanMiddleware
from market.telemetry.logs import AccessLog, encode_line
from market.telemetry.metrics import DURATION_BUCKETS_S, NO_EXEMPLAR


def test_each_request_series_has_its_own_attributes_built_once():
    series = DurationSeries()
    ok = series.attributes("GET", 200, "http", "/api/v1/items")
    assert ok == {
        names.HTTP_REQUEST_METHOD: "GET",
        names.HTTP_RESPONSE_STATUS_CODE: 200,
        names.URL_SCHEME: "http",
        names.HTTP_ROUTE: "/api/v1/items",
    }
    assert series.attributes("GET", 200, "http", "/api/v1/items") is ok  # the same dict, not a new one
    failed = series.attributes("GET", 503, "http", "/api/v1/items")
    assert failed[names.ERROR_TYPE] == "503" and failed[names.HTTP_RESPONSE_STATUS_CODE] == 503
    assert names.ERROR_TYPE not in series.attributes("GET", 404, "http", "/api/v1/items")  # the client's
    assert series.attributes("POST", 200, "https", "/api/v1/items") == {
        names.HTTP_REQUEST_METHOD: "POST",
        names.HTTP_RESPONSE_STATUS_CODE: 200,
        names.URL_SCHEME: "https",
        names.HTTP_ROUTE: "/api/v1/items",
    }
    assert names.HTTP_ROUTE not in series.attributes("GET", 404, "http", None)  # no route matched
    assert ok == series.attributes("GET", 200, "http", "/api/v1/items")  # left as built


def test_the_series_cache_starts_over_when_full_and_stays_right():
    series = DurationSeries()
    series.MAX_SERIES = 3
    for status in (200, 201, 202, 203, 500):
        attributes = series.attributes("GET", status, "http", "/x")
        assert attributes[names.HTTP_RESPONSE_STATUS_CODE] == status
    assert len(series._cache) <= 3


def test_exemplars_are_offered_once_per_second_per_series_and_bucket():
    pacer = ExemplarPacer(DURATION_BUCKETS_S, interval_s=1.0)
    fast, other_series = object(), object()
    assert pacer.due(fast, 0.003, now=100.0)  # the first of its bucket
    assert not pacer.due(fast, 0.004, now=100.5)  # same bucket (<= 5 ms), within the second
    assert pacer.due(fast, 0.2, now=100.5)  # another bucket
    assert pacer.due(other_series, 0.003, now=100.5)  # another series
    assert pacer.due(fast, 0.001, now=101.0)  # a second later
    assert not pacer.due(fast, 0.002, now=101.9)


def _metrics() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    view = View(instrument_name="*", aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S))
    return MeterProvider(metric_readers=[reader], views=[view]), reader


def _exemplars(reader: InMemoryMetricReader) -> list[object]:
    data = reader.get_metrics_data()
    return [
        exemplar
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
        for exemplar in point.exemplars
    ]


def test_no_exemplar_context_offers_none_inside_a_sampled_span():
    provider, reader = _metrics()
    duration = provider.get_meter("test").create_histogram("d", unit="s")
    span = TracerProvider().get_tracer("test").start_span("request")
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        duration.record(0.01, {"k": "v"}, context=NO_EXEMPLAR)
        assert _exemplars(reader) == []
        # An empty Context would not do: the SDK takes it for "none given" and offers the current span.
        duration.record(0.01, {"k": "v"}, context=otel_context.Context())
        (exemplar,) = _exemplars(reader)
        assert exemplar.trace_id == span.get_span_context().trace_id
    finally:
        otel_context.detach(token)
        span.end()


@pytest.fixture
def db_spans(monkeypatch: pytest.MonkeyPatch):
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider, reader = _metrics()
    spans = DbSpans("postgresql", "market")
    spans._tracer = tracer_provider.get_tracer("test")
    spans._duration = meter_provider.get_meter("test").create_histogram(names.DB_CLIENT_OPERATION_DURATION[0])
    return spans, tracer_provider, exporter, reader


async def _returns(value: object) -> object:
    return value


async def _raises(error: Exception) -> None:
    raise error


def _points(reader: InMemoryMetricReader) -> dict[frozenset, int]:
    data = reader.get_metrics_data()
    return {
        frozenset(point.attributes.items()): point.count
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
    }


def test_each_statement_is_measured_and_spanned_by_its_own_operation_and_table(db_spans):
    spans, tracer_provider, exporter, reader = db_spans
    select = "SELECT id FROM items WHERE id = $1"
    insert = "INSERT INTO orders (id) VALUES ($1)"
    with tracer_provider.get_tracer("test").start_as_current_span("request"):
        for sql in (select, insert, select, "BEGIN"):
            assert asyncio.run(spans.traced(sql, _returns(sql))) == sql
    assert spans.described(select) is spans.described(select)  # built once per text
    base = {names.DB_SYSTEM_NAME: "postgresql", names.DB_NAMESPACE: "market"}
    assert _points(reader) == {
        frozenset({**base, names.DB_OPERATION_NAME: "SELECT", names.DB_COLLECTION_NAME: "items"}.items()): 2,
        frozenset({**base, names.DB_OPERATION_NAME: "INSERT", names.DB_COLLECTION_NAME: "orders"}.items()): 1,
        frozenset({**base, names.DB_OPERATION_NAME: "BEGIN"}.items()): 1,
    }
    finished = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert [s.name for s in finished] == ["SELECT items", "INSERT orders", "SELECT items", "BEGIN"]
    assert dict(finished[1].attributes) == {
        **base,
        names.DB_OPERATION_NAME: "INSERT",
        names.DB_COLLECTION_NAME: "orders",
        names.DB_QUERY_SUMMARY: "INSERT orders",
        names.DB_QUERY_TEXT: insert,
    }
    assert _exemplars(reader) == []  # statements offer none, traced or not


def test_a_failed_statement_adds_error_type_without_changing_the_cached_attributes(db_spans):
    spans, tracer_provider, exporter, reader = db_spans
    sql = "UPDATE items SET stock = stock - $1 WHERE id = $2"
    with tracer_provider.get_tracer("test").start_as_current_span("request"):
        with pytest.raises(LookupError):
            asyncio.run(spans.traced(sql, _raises(LookupError("gone"))))
        asyncio.run(spans.traced(sql, _returns(None)))
    assert names.ERROR_TYPE not in spans.described(sql).metric_attributes
    base = {
        names.DB_SYSTEM_NAME: "postgresql",
        names.DB_NAMESPACE: "market",
        names.DB_OPERATION_NAME: "UPDATE",
        names.DB_COLLECTION_NAME: "items",
    }
    assert _points(reader) == {
        frozenset({**base, names.ERROR_TYPE: "LookupError"}.items()): 1,
        frozenset(base.items()): 1,
    }
    failed, succeeded = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert failed.attributes[names.ERROR_TYPE] == "LookupError" and not failed.status.is_ok
    assert names.ERROR_TYPE not in succeeded.attributes


def test_a_statements_span_is_a_child_of_the_current_span_but_not_made_current(db_spans):
    """No context attached and detached per statement: during it, the current span stays the request's."""
    spans, tracer_provider, exporter, _ = db_spans
    during = []

    async def statement() -> None:
        during.append(trace.get_current_span())

    with tracer_provider.get_tracer("test").start_as_current_span("request") as request:
        asyncio.run(spans.traced("SELECT id FROM items WHERE id = $1", statement()))
        assert during == [request]
    statement, parent = exporter.get_finished_spans()
    assert statement.parent.span_id == parent.context.span_id
    assert statement.context.trace_id == parent.context.trace_id


def test_the_resource_is_hashed_once_and_equals_what_the_sdk_would_build():
    from market.config import Settings
    from market.telemetry.tracing import HashedOnceResource, build_resource

    resource = build_resource(
        Settings.from_env({}, dotenv=None), {"OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=p"}
    )
    assert isinstance(resource, HashedOnceResource)
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert resource.attributes["k8s.pod.name"] == "p"
    with pytest.raises(TypeError):
        resource.attributes["service.name"] = "changed"  # immutable: the cached hash stays true


def test_unsampled_requests_do_not_use_up_the_exemplar_turn_of_a_sampled_one():
    """The middleware called directly: an unsampled request (its parent says so) then a sampled one, in the
    same series and bucket within the second; the sampled one's trace is the exemplar."""
    provider, reader = _metrics()
    duration = provider.get_meter("test").create_histogram("d", unit="s")
    tracer = TracerProvider().get_tracer("test")  # parent-based: the traceparent's flag decides

    async def app(scope, receive, send):
        scope["path_template"] = "/health/live"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    responses: list[dict] = []

    async def keep(message):
        responses.append(message)

    def request(traceparent: str) -> str:
        headers = [(b"traceparent", traceparent.encode())]
        scope = {"type": "http", "method": "GET", "path": "/health/live", "headers": headers}
        asyncio.run(middleware(scope, None, keep))
        start = [m for m in responses if m["type"] == "http.response.start"][-1]
        return dict(start["headers"])[b"traceresponse"].decode().split("-")[1]

    middleware = ServerSpanMiddleware(app, tracer, duration=duration, access_log=AccessLog())
    # One bucket for every value and an hour's pace: only the first offer of the test can be due.
    middleware._exemplars = ExemplarPacer((), interval_s=3600.0)
    request("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    assert _exemplars(reader) == []
    sampled = request("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    (exemplar,) = _exemplars(reader)
    assert format(exemplar.trace_id, "032x") == sampled


def test_an_unsampled_statement_is_measured_as_the_untraced_path_measures_it(db_spans):
    """`measured`, the path of every statement outside a sampled span: the statement's result, the same
    points as `traced` would record (error.type added on failure), no span."""
    spans, _, exporter, reader = db_spans
    sql = "SELECT id FROM items WHERE id = $1"

    async def rows() -> list[int]:
        return [1, 2]

    async def fails() -> None:
        raise LookupError("gone")

    async def run() -> None:
        assert await spans.measured(sql, rows()) == [1, 2]
        with pytest.raises(LookupError):
            await spans.measured(sql, fails())

    asyncio.run(run())
    assert exporter.get_finished_spans() == ()
    base = {
        names.DB_SYSTEM_NAME: "postgresql",
        names.DB_NAMESPACE: "market",
        names.DB_OPERATION_NAME: "SELECT",
        names.DB_COLLECTION_NAME: "items",
    }
    assert _points(reader) == {
        frozenset(base.items()): 1,
        frozenset({**base, names.ERROR_TYPE: "LookupError"}.items()): 1,
    }
    assert names.ERROR_TYPE not in spans.described(sql).metric_attributes
    assert _exemplars(reader) == []


def test_with_the_sdk_disabled_a_request_still_gets_a_reference_and_starts_no_span(capsys, caplog):
    """OTEL_SDK_DISABLED: the tracer is a no-op, so the middleware starts no span and puts nothing in the
    context, yet the client, the handler and the access line all get the same fresh reference."""
    caplog.set_level("INFO", logger="market.access")
    seen: dict[str, object] = {}

    async def app(scope, receive, send):
        seen["context"] = dict(otel_context.get_current())
        seen["state"] = dict(scope["state"])
        scope["path_template"] = "/api/v1/items"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    responses: list[dict] = []

    async def keep(message):
        responses.append(message)

    middleware = ServerSpanMiddleware(app, trace.NoOpTracer(), access_log=AccessLog())
    scope = {"type": "http", "method": "GET", "path": "/api/v1/items", "headers": []}
    asyncio.run(middleware(scope, None, keep))
    headers = dict(responses[0]["headers"])
    version, trace_id, span_id, flags = headers[b"traceresponse"].decode().split("-")
    assert (version, flags) == ("00", "00")
    assert len(trace_id) == 32 and len(span_id) == 16 and int(trace_id, 16) and int(span_id, 16)
    assert seen["state"]["trace_id"] == trace_id and seen["state"]["span_id"] == span_id
    assert seen["context"] == {}  # no span put in the context
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["trace_id"], line["span_id"], line["http.route"]) == (trace_id, span_id, "/api/v1/items")
    asyncio.run(middleware(dict(scope, headers=[]), None, keep))
    assert (
        dict(responses[2]["headers"])[b"traceresponse"].decode().split("-")[1] != trace_id
    )  # fresh each time


def test_a_log_line_is_one_json_object_whatever_its_fields_hold():
    """The JSON lines' encoder: text as UTF-8, times and ids as text, and what msgspec will not encode (a
    dict keyed by tuples, an integer past 64 bits) still a line rather than an error."""
    when = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    line = encode_line({"m": "café", "at": when, "id": uuid.UUID(int=1), "odd": {(1, 2): 3}, "big": 2**70})
    assert "\n" not in line
    decoded = json.loads(line)
    assert decoded["m"] == "café" and decoded["at"].startswith("2026-12-04T17:00:00")
    assert decoded["id"] == str(uuid.UUID(int=1)) and decoded["big"] == 2**70
    assert list(decoded["odd"].values()) == [3]


def test_access_lines_written_in_one_turn_of_the_loop_are_flushed_once_at_its_end(monkeypatch, caplog):
    """The flush (a system call) is per turn of the event loop, not per line; no line waits longer than that."""
    caplog.set_level("INFO", logger="market.access")

    class Stream:
        def __init__(self) -> None:
            self.written: list[str] = []
            self.flushed: list[int] = []  # how many lines had been written at each flush

        def write(self, text: str) -> None:
            self.written.append(text)

        def flush(self) -> None:
            self.flushed.append(len(self.written))

    stream = Stream()
    monkeypatch.setattr("sys.stdout", stream)
    log = AccessLog()

    async def requests() -> list[int]:
        log.write("GET / 200", None, None, {})
        log.write("GET / 200", None, None, {})
        log.write("GET / 200", None, None, {})
        before = list(stream.flushed)
        await asyncio.sleep(0)  # the loop's next turn
        log.write("GET / 404", None, None, {})
        await asyncio.sleep(0)
        return before

    assert asyncio.run(requests()) == []  # nothing flushed line by line
    assert stream.flushed[:2] == [3, 4]
    log.write("outside a loop", None, None, {})
    assert stream.flushed[-1] == 5  # at once


def test_with_the_sdk_disabled_an_incoming_traceparent_still_names_the_trace():
    """No span is made (OTEL_SDK_DISABLED), but `traceresponse`, logs and problem bodies keep the caller's
    trace id, as the contract's "incoming traceparent is honoured" asks; the span id is the server's own."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def keep(message):
        sent.append(message)

    middleware = ServerSpanMiddleware(app, NoOpTracer(), access_log=AccessLog())
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = [(b"traceparent", incoming.encode())]
    asyncio.run(middleware({"type": "http", "method": "GET", "path": "/x", "headers": headers}, None, keep))
    asyncio.run(middleware({"type": "http", "method": "GET", "path": "/x", "headers": []}, None, keep))
    first, second = [dict(m["headers"])[b"traceresponse"].decode().split("-") for m in sent[::2]]
    assert first[1] == "4bf92f3577b34da6a3ce929d0e0e4736" and first[2] != "00f067aa0ba902b7"
    assert second[1] != first[1] and len(second[1]) == 32
