"""The metric exporters are pushed what /metrics reads (one aggregation per process), over real OTLP/HTTP to a
local receiver: cumulative points, each exemplar exported once even when a scrape collected it first, /metrics
keeping the latest exemplar whoever collected it, a last export at shutdown, and a reader of its own for an
exporter that asks for delta temporality."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from market.telemetry.metrics import NO_EXEMPLAR, SharedMetricReader, build_meter_provider
from tests.support.servers.telemetry_receivers import OtlpHttpReceiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpHttpReceiver]:
    started = OtlpHttpReceiver().start()
    # The SDK's exporter reads its endpoint from the process environment, as in production.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", started.endpoint)
    try:
        yield started
    finally:
        started.stop()


def _histogram_points(receiver: OtlpHttpReceiver, name: str) -> list:
    return [
        point
        for request in receiver.metric_requests()
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.histogram.data_points
    ]


def test_an_export_carries_the_aggregation_metrics_reads_and_the_exemplars_a_scrape_took(receiver):
    reader = SharedMetricReader()
    provider = build_meter_provider(
        Resource.create({}), reader, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    )
    duration = provider.get_meter("t").create_histogram("t.duration", unit="s")
    span = TracerProvider().get_tracer("t").start_span("sampled")
    try:
        duration.record(0.3, {"route": "/items"}, context=trace.set_span_in_context(span))
        scraped = reader.get_metrics_data()  # /metrics collects first: the SDK hands each exemplar out once
        (point,) = scraped.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
        assert [e.trace_id for e in point.exemplars] == [span.get_span_context().trace_id]

        assert provider.force_flush()
        (exported,) = _histogram_points(receiver, "t.duration")
        assert exported.count == 1
        assert [e.trace_id.hex() for e in exported.exemplars] == [
            format(span.get_span_context().trace_id, "032x")
        ]

        duration.record(0.3, {"route": "/items"}, context=NO_EXEMPLAR)
        assert provider.force_flush()
        latest = _histogram_points(receiver, "t.duration")[-1]
        assert latest.count == 2 and list(latest.exemplars) == []  # cumulative; an exemplar is sent once
        # The exports collected in between, and /metrics still shows the latest exemplar of the bucket.
        (point,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
        assert [e.trace_id for e in point.exemplars] == [span.get_span_context().trace_id]
    finally:
        span.end()
        provider.shutdown()
    assert _histogram_points(receiver, "t.duration")[-1].count == 2  # the last export, at shutdown
    assert len(_histogram_points(receiver, "t.duration")) == 3


def test_an_exporter_that_prefers_delta_gets_a_reader_of_its_own(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    reader = SharedMetricReader()
    provider = build_meter_provider(
        Resource.create({}), reader, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    )
    orders = provider.get_meter("t").create_counter("t.orders")
    try:
        for _ in range(2):
            orders.add(1)
            assert provider.force_flush()
        sums = [
            metric.sum
            for request in receiver.metric_requests()
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "t.orders"
        ]
        assert [s.data_points[0].as_int for s in sums] == [1, 1]
        assert {s.aggregation_temporality for s in sums} == {
            AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        }
        # /metrics still reads its own cumulative aggregation.
        (point,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
        assert point.value == 2
    finally:
        provider.shutdown()


def test_the_histograms_aggregated_by_the_service_are_exported_with_their_exemplars_once(receiver):
    reader = SharedMetricReader(Resource.create({}))
    provider = build_meter_provider(
        Resource.create({}), reader, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    )
    duration = reader.histogram(("t.local", "s", "A local histogram."), (0.1, 1.0))
    span = TracerProvider().get_tracer("t").start_span("sampled")
    try:
        duration.record(0.3, {"route": "/items"}, context=trace.set_span_in_context(span))
        assert provider.force_flush()
        duration.record(0.05, {"route": "/items"}, context=NO_EXEMPLAR)
        assert provider.force_flush()
        first, second = _histogram_points(receiver, "t.local")
        assert (first.count, list(first.bucket_counts)) == (1, [0, 1, 0])
        assert (second.count, list(second.bucket_counts)) == (2, [1, 1, 0])  # cumulative
        assert [e.span_id.hex() for e in first.exemplars] == [format(span.get_span_context().span_id, "016x")]
        assert list(second.exemplars) == []  # sent once
        assert first.start_time_unix_nano == second.start_time_unix_nano
    finally:
        span.end()
        provider.shutdown()
