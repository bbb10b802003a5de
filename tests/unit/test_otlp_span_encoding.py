"""The direct OTLP span encoder (market.telemetry.otlp_spans) writes what the SDK's encoder writes: both outputs
are decoded with the real protobuf classes and compared, for spans covering every field and attribute type."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from market.telemetry import otlp_spans
from market.telemetry.otlp_spans import OtlpHttpSpanExporter, encode_spans
from market.telemetry.tracing import HashedOnceResource

ATTRIBUTES = {
    "str": "a value",
    "empty": "",
    "unicode": "prix: 12,50 € — ok",
    "long": "x" * 300,
    "true": True,
    "false": False,
    "zero": 0,
    "int": 42,
    "negative": -7,
    "big": 2**62,
    "min": -(2**63),
    "float": 0.001234,
    "float zero": 0.0,
    "negative zero": -0.0,
    "float negative": -3.5,
    "nan": float("nan"),
    "inf": float("inf"),
    "strs": ("a", "", "c"),
    "bools": (True, False),
    "ints": (1, -1, 300),
    "floats": (1.5, 2.25),
    "empty seq": (),
}


def _spans(resource: Resource, *, limits: SpanLimits | None = None) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("market", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.30.0")
    other = provider.get_tracer("other.scope", attributes={"scope.attr": "v", "n": 3})
    bare = provider.get_tracer("")
    remote = SpanContext(
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        span_id=0x1122334455667788,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    linked = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(0))
    with tracer.start_as_current_span(
        "GET /api/v1/items",
        context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes=ATTRIBUTES,
        links=[Link(remote, {"link.attr": 1}), Link(linked)],
    ) as server:
        server.add_event("no attributes")
        server.add_event("with attributes", {"exception.type": "ValueError", "n": 2, "ok": True})
        server.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system.name", "postgresql")
            child.set_status(Status(StatusCode.ERROR, "UniqueViolationError"))
        with other.start_as_current_span("internal") as internal:
            internal.set_status(Status(StatusCode.ERROR))
        for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            with bare.start_as_current_span(f"kind {kind.name}", kind=kind):
                pass
    with tracer.start_as_current_span("root, no parent", attributes={"k": "v"}):
        pass
    if limits is not None:
        with tracer.start_as_current_span(
            "over the limits", attributes={f"a{i}": i for i in range(5)}
        ) as span:
            for i in range(5):
                span.add_event(f"event {i}", {f"e{j}": j for j in range(5)})
    return list(exporter.get_finished_spans())


def _resource() -> Resource:
    return Resource.create({"service.name": "market", "service.version": "1.0", "count": 3, "flag": True})


def _assert_same(spans: list[ReadableSpan]) -> None:
    ours = encode_spans(spans)
    theirs = sdk_encode_spans(spans)
    decoded = ExportTraceServiceRequest.FromString(ours)
    # NaN != NaN in message equality: compare the NaN-free text forms as well as the messages' bytes.
    assert str(decoded) == str(theirs)
    assert ours == theirs.SerializePartialToString(deterministic=True)


def test_every_field_and_attribute_type_is_encoded_as_the_sdk_does() -> None:
    spans = _spans(_resource())
    assert len(spans) == 7
    _assert_same(spans)
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert len(decoded.resource_spans) == 1
    assert [scope.scope.name for scope in decoded.resource_spans[0].scope_spans] == [
        "market",
        "other.scope",
        "",
    ]


def test_the_projects_resource_and_several_resources_in_one_batch() -> None:
    first = _spans(HashedOnceResource(_resource().attributes, "https://opentelemetry.io/schemas/1.30.0"))
    second = _spans(Resource.create({"service.name": "other"}))
    mixed = [span for pair in zip(first, second, strict=True) for span in pair]
    _assert_same(mixed)
    assert len(ExportTraceServiceRequest.FromString(encode_spans(mixed)).resource_spans) == 2


def test_equal_values_of_other_types_keep_their_own_encoding() -> None:
    # Strings and integers are cached by (field, key, value): 1 == True == 1.0 as dict keys, so a cache that held
    # one of them would write the others' bytes.
    provider = TracerProvider(resource=_resource())
    spans = []
    for value in (1, True, 1.0, "1", 1, True, 0, False, 0.0):
        span = provider.get_tracer("market").start_span("s", attributes={"n": value})
        span.end()
        spans.append(span)
    _assert_same(spans)
    _assert_same(list(reversed(spans)))


def test_a_mapping_value_is_encoded_as_the_sdk_does() -> None:
    # Unhashable: it cannot be looked up among the cached pairs, and is encoded every time.
    provider = TracerProvider(resource=_resource())
    spans = []
    for _ in range(2):
        span = provider.get_tracer("market").start_span(
            "s", attributes={"nested": {"a": 1, "b": "c"}, "k": "v"}
        )
        span.end()
        spans.append(span)
    _assert_same(spans)


def test_dropped_attributes_events_and_links_are_counted() -> None:
    spans = _spans(
        _resource(), limits=SpanLimits(max_span_attributes=2, max_events=2, max_event_attributes=1)
    )
    over = [span for span in spans if span.name == "over the limits"]
    assert over[0].dropped_attributes and over[0].dropped_events
    _assert_same(spans)


def test_cached_encodings_are_reused_without_changing_the_bytes() -> None:
    spans = _spans(_resource())
    first = encode_spans(spans)
    assert otlp_spans._str_pairs and otlp_spans._int_pairs and otlp_spans._header_cache
    assert encode_spans(spans) == first
    otlp_spans._str_pairs.clear()
    otlp_spans._int_pairs.clear()
    otlp_spans._name_cache.clear()
    otlp_spans._float_cache.clear()
    otlp_spans._header_cache.clear()
    assert encode_spans(spans) == first


def test_a_string_attribute_shared_by_a_span_its_events_and_links_keeps_each_ones_field() -> None:
    """The cache of encoded string pairs once ignored which message a pair went into: `market.order.id` set on
    a span and then on its `market.payment.attempted` event was written into the event with the span's field
    number, which the collector skips, so the event arrived with no attributes (seen from outside)."""
    otlp_spans._str_pairs.clear()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    shared = {"market.order.id": "order-1", "market.payment.outcome": "succeeded"}
    tracer = provider.get_tracer("market")
    with tracer.start_as_current_span("payment charge", attributes=shared) as first:
        first.add_event("market.payment.attempted", shared)
    linked = first.get_span_context()
    with tracer.start_as_current_span("after", links=[Link(linked, shared)]) as second:
        second.add_event("market.order.paid", shared)
    with tracer.start_as_current_span("event first") as third:
        third.add_event("market.cart.item_added", {"market.item.id": "item-1"})
        third.set_attribute("market.item.id", "item-1")
    spans = list(exporter.get_finished_spans())
    _assert_same(spans)
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    received = decoded.resource_spans[0].scope_spans[0].spans
    assert all(
        len(event.attributes) == len(event_of.attributes)
        for event, event_of in [
            (span.events[0], original.events[0]) for span, original in zip(received, spans, strict=True)
        ]
    )
    assert len(received[1].links[0].attributes) == 2
    assert received[2].trace_state == ""


def test_a_value_protobuf_cannot_hold_is_left_out_and_logged_as_the_sdk_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spans = _spans(_resource())
    span = spans[-1]
    span._attributes = {"too big": 2**64, "bad text": "\ud800", "kept": "yes"}  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        _assert_same([span])
    assert caplog.text.count("Failed to encode key") == 4  # two keys, by each encoder
    decoded = ExportTraceServiceRequest.FromString(encode_spans([span]))
    assert [kv.key for kv in decoded.resource_spans[0].scope_spans[0].spans[0].attributes] == ["kept"]


def test_an_empty_batch() -> None:
    assert encode_spans([]) == sdk_encode_spans([]).SerializePartialToString() == b""


def test_the_exporter_posts_the_direct_encoding_with_the_sdks_http_settings() -> None:
    sent: list[bytes] = []

    class Client:
        def export(self, body: bytes) -> object:
            sent.append(body)
            return type("Result", (), {"success": True, "error": None, "status_code": 200})()

        def shutdown(self) -> None:
            pass

    exporter = OtlpHttpSpanExporter(endpoint="http://127.0.0.1:1/v1/traces", timeout=3)
    assert exporter._endpoint == "http://127.0.0.1:1/v1/traces"
    exporter._client = Client()  # type: ignore[assignment]
    spans = _spans(_resource())
    assert exporter.export(spans).name == "SUCCESS"
    assert sent == [encode_spans(spans)]
    exporter.shutdown()
    assert exporter.export(spans).name == "FAILURE"


def test_only_otlp_http_uses_the_direct_encoder() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    from market.telemetry.otlp_exporters import otlp_exporter

    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    http = otlp_exporter(endpoint, "TRACES")
    grpc = otlp_exporter({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "TRACES")
    assert isinstance(http, OtlpHttpSpanExporter)
    assert isinstance(grpc, GrpcExporter) and not isinstance(grpc, OtlpHttpSpanExporter)
    for exporter in (http, grpc):
        exporter.shutdown()
