"""A failed OTLP export (HTTP or gRPC) leaves nothing behind for the garbage collector: the batch it failed to send
is freed as soon as the export returns, not at the next full collection."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from market.telemetry.otlp_failures import TracebackFreeTransport, without_retained_failures
from market.telemetry.otlp_spans import OtlpHttpSpanExporter


def _refused_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens on it
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1/traces"


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The automatic collector stays out of the way, so that what a collection finds is the export's doing."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _garbage_after(exporter: SpanExporter) -> list[object]:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    spans = []
    for i in range(20):
        span = tracer.start_span(f"span {i}")
        span.end()
        spans.append(span)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    del spans, span
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    return list(gc.garbage)


@pytest.mark.usefixtures("collector_off")
def test_a_refused_export_frees_its_batch_at_once():
    exporter = without_retained_failures(OtlpHttpSpanExporter(endpoint=_refused_url(), timeout=0.5))
    garbage = _garbage_after(exporter)
    assert not [o for o in garbage if isinstance(o, ReadableSpan)]
    assert not [o for o in garbage if isinstance(o, BaseException)]


@pytest.mark.usefixtures("collector_off")
def test_the_sdk_transport_alone_keeps_the_batch_in_a_cycle():
    """Why the wrapper exists (opentelemetry-exporter-http-transport 0.66b2): if this fails, the SDK no longer
    leaves the cycle and `without_retained_failures` can go."""
    garbage = _garbage_after(OtlpHttpSpanExporter(endpoint=_refused_url(), timeout=0.5))
    assert [o for o in garbage if isinstance(o, ReadableSpan)]


def _refused_grpc() -> GrpcSpanExporter:
    return GrpcSpanExporter(endpoint=_refused_url().removesuffix("/v1/traces"), insecure=True, timeout=1)


@pytest.mark.usefixtures("collector_off")
def test_a_refused_grpc_export_frees_its_batch_at_once():
    garbage = _garbage_after(without_retained_failures(_refused_grpc()))
    assert not [o for o in garbage if isinstance(o, ReadableSpan)]


@pytest.mark.usefixtures("collector_off")
def test_the_sdk_grpc_exporter_alone_keeps_the_batch_in_a_cycle():
    """As above, for opentelemetry-exporter-otlp-proto-grpc 1.45."""
    garbage = _garbage_after(_refused_grpc())
    assert [o for o in garbage if isinstance(o, ReadableSpan)]


def test_every_exporter_is_wrapped_once():
    metric_exporter = without_retained_failures(OTLPMetricExporter(endpoint=_refused_url()))
    assert isinstance(metric_exporter._client._transport, TracebackFreeTransport)
    span_exporter = without_retained_failures(OtlpHttpSpanExporter(endpoint=_refused_url()))
    wrapped = span_exporter._client._transport
    assert without_retained_failures(span_exporter)._client._transport is wrapped
    grpc = without_retained_failures(_refused_grpc())
    results = grpc._metrics
    assert without_retained_failures(grpc)._metrics is results


def test_the_error_keeps_its_type_and_message():
    """What the exporter logs and counts (the error's text, its type) is still there."""
    exporter = without_retained_failures(OtlpHttpSpanExporter(endpoint=_refused_url(), timeout=0.5))
    result = exporter._client._transport.request("POST", exporter._endpoint, data=b"", timeout=0.5)
    assert result.error is not None
    assert result.error.__traceback__ is None
    assert exporter._client._transport.is_connection_error(result.error)
    assert "Connection refused" in str(result.error)
