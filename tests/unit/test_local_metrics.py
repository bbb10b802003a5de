"""The histograms the service aggregates itself (LocalHistogram) give what the SDK's explicit-bucket histogram
gives for the same measurements, and reach /metrics' reader as one metric, merged with the SDK's when an
instrument of the same name was made through the SDK too."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from market.telemetry import names
from market.telemetry.local_metrics import OVERFLOW, LocalCounter, LocalHistogram
from market.telemetry.metrics import (
    DURATION_BUCKETS_S,
    NO_EXEMPLAR,
    Instruments,
    SharedMetricReader,
    build_meter_provider,
)

BOUNDS = (0.005, 0.01, 0.025, 0.1, 1.0)
# On each boundary, between them, below the first and past the last: where bisect_left and bisect_right differ.
VALUES = (0.0, 0.005, 0.0051, 0.01, 0.02, 0.025, 0.1, 0.5, 1.0, 1.5, 30.0, 0.005)


def _points(metric) -> dict[frozenset, object]:
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


def _sdk_metric(records):
    reader = InMemoryMetricReader()
    view = View(instrument_name="d", aggregation=ExplicitBucketHistogramAggregation(BOUNDS))
    histogram = MeterProvider(metric_readers=[reader], views=[view]).get_meter("t").create_histogram("d")
    for value, attributes in records:
        histogram.record(value, attributes, context=NO_EXEMPLAR)
    return reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0]


def test_the_same_counts_sums_and_extremes_as_the_sdk():
    get, put = (
        {"http.request.method": "GET"},
        {"http.request.method": "PUT", "http.response.status_code": 201},
    )
    records = [(value, get) for value in VALUES] + [(0.02, put), (2.0, dict(put))]
    local = LocalHistogram("d", "s", "", BOUNDS)
    for value, attributes in records:
        local.record(value, attributes, context=NO_EXEMPLAR)
    ours, theirs = _points(local.collect()), _points(_sdk_metric(records))
    assert ours.keys() == theirs.keys() and len(ours) == 2  # equal dicts are one series, whatever the object
    for key, point in theirs.items():
        mine = ours[key]
        assert list(mine.bucket_counts) == list(point.bucket_counts)
        assert (mine.count, mine.min, mine.max) == (point.count, point.min, point.max)
        assert abs(mine.sum - point.sum) < 1e-9
        assert tuple(mine.explicit_bounds) == tuple(point.explicit_bounds)


def test_nothing_recorded_collects_nothing():
    assert LocalHistogram("d", "s", "", BOUNDS).collect() is None


def test_a_sampled_trace_leaves_the_latest_exemplar_of_its_bucket():
    local = LocalHistogram("d", "s", "", BOUNDS)
    tracer = TracerProvider().get_tracer("t")
    first, second = tracer.start_span("first"), tracer.start_span("second")
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_span("unsampled")
    attributes = {"k": "v"}
    local.record(0.02, attributes, context=trace.set_span_in_context(first))
    local.record(0.02, attributes, context=trace.set_span_in_context(second))
    local.record(0.5, attributes, context=trace.set_span_in_context(unsampled))
    with trace.use_span(first):
        local.record(0.5, attributes, context=NO_EXEMPLAR)
        local.record(0.003, attributes)  # no context given: the current one's span
    (point,) = local.collect().data.data_points
    ids = [(e.trace_id, e.span_id, e.value) for e in point.exemplars]
    assert ids == [
        (first.get_span_context().trace_id, first.get_span_context().span_id, 0.003),
        (second.get_span_context().trace_id, second.get_span_context().span_id, 0.02),
    ]


def test_past_the_cardinality_limit_measurements_go_to_the_overflow_series():
    local = LocalHistogram("d", "s", "", BOUNDS)
    local.MAX_SERIES = 3
    for n in range(5):
        local.record(0.02, {"n": n}, context=NO_EXEMPLAR)
    local.record(0.02, {"n": 0}, context=NO_EXEMPLAR)  # a known series still counts as itself
    counts = {frozenset(k): p.count for k, p in _points(local.collect()).items()}
    assert counts == {
        frozenset({("n", 0)}): 2,
        frozenset({("n", 1)}): 1,
        frozenset({("n", 2)}): 1,
        frozenset(OVERFLOW.items()): 2,
    }


def test_a_caller_building_a_dict_per_measurement_still_gets_one_series():
    local = LocalHistogram("d", "s", "", BOUNDS)
    local.MAX_ALIASES = 4
    for _ in range(10):
        local.record(0.02, {"k": "v"}, context=NO_EXEMPLAR)
    (point,) = local.collect().data.data_points
    assert point.count == 10 and len(local._aliases) <= 4


def _metric(reader: SharedMetricReader, name: str):
    data = reader.get_metrics_data()
    found = [
        metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == names.INSTRUMENTATION_SCOPE
        for metric in sm.metrics
        if metric.name == name
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_reader_collects_them_in_the_service_scope_merged_with_the_sdk_instrument_of_the_same_name():
    reader = SharedMetricReader(Resource.create({}))
    provider = build_meter_provider(Resource.create({}), reader, {})
    meter = provider.get_meter(names.INSTRUMENTATION_SCOPE)
    instruments = Instruments.create(meter, reader)
    assert isinstance(instruments.http_duration, LocalHistogram)
    assert isinstance(instruments.db_duration, LocalHistogram)
    name = names.DB_CLIENT_OPERATION_DURATION[0]
    attributes = {names.DB_OPERATION_NAME: "SELECT"}
    instruments.db_duration.record(0.002, attributes, context=NO_EXEMPLAR)
    assert _metric(reader, name).data.data_points[0].count == 1
    # A `Database` built before telemetry was installed measures through the global meter's SDK instrument.
    meter.create_histogram(name, unit="s").record(0.3, dict(attributes), context=NO_EXEMPLAR)
    (point,) = _metric(reader, name).data.data_points
    assert point.count == 2 and (point.min, point.max) == (0.002, 0.3)
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS_S
    assert sum(point.bucket_counts) == 2


def test_without_the_reader_the_instruments_are_the_sdks():
    reader = InMemoryMetricReader()
    instruments = Instruments.create(MeterProvider(metric_readers=[reader]).get_meter("t"))
    assert not isinstance(instruments.http_duration, LocalHistogram)
    instruments.http_duration.record(0.1, {"k": "v"})
    assert reader.get_metrics_data() is not None
    # OTEL_SDK_DISABLED: the provider's meter is a no-op one, and nothing is aggregated anywhere.
    disabled = Instruments.create(NoOpMeter("t"), SharedMetricReader())
    assert not isinstance(disabled.http_duration, LocalHistogram)


def test_an_exporter_with_a_reader_of_its_own_keeps_the_histograms_in_the_sdk(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    reader = SharedMetricReader()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    provider = build_meter_provider(Resource.create({}), reader, endpoint)
    # Its own periodic reader: shut down, so that no thread is left exporting to nobody.
    provider.shutdown(timeout_millis=100)
    assert not reader.aggregates_alone
    alone = SharedMetricReader()
    build_meter_provider(Resource.create({}), alone, {})
    assert alone.aggregates_alone


def test_a_counter_sums_per_series_refuses_negative_amounts_and_keeps_the_latest_sampled_exemplar():
    local = LocalCounter("c", "{order}", "")
    span = TracerProvider().get_tracer("t").start_span("sampled")
    eur, usd = {"currency": "EUR"}, {"currency": "USD"}
    local.add(0, usd)  # exists at zero from the start
    local.add(2, eur, context=NO_EXEMPLAR)
    local.add(1, dict(eur), context=trace.set_span_in_context(span))
    local.add(-5, eur)
    points = _points(local.collect())
    assert {key: p.value for key, p in points.items()} == {
        frozenset(eur.items()): 3,
        frozenset(usd.items()): 0,
    }
    (exemplar,) = points[frozenset(eur.items())].exemplars
    assert (exemplar.trace_id, exemplar.value) == (span.get_span_context().trace_id, 1)
    assert points[frozenset(usd.items())].exemplars == []
    metric = local.collect()
    assert metric.data.is_monotonic and metric.data.aggregation_temporality.name == "CUMULATIVE"


def test_a_counter_made_through_the_sdk_too_is_merged_into_the_service_one():
    reader = SharedMetricReader(Resource.create({}))
    meter = build_meter_provider(Resource.create({}), reader, {}).get_meter(names.INSTRUMENTATION_SCOPE)
    instruments = Instruments.create(meter, reader)
    assert isinstance(instruments.orders_completed, LocalCounter)
    name = names.ORDERS_COMPLETED[0]
    attributes = {names.ORDER_CURRENCY: "EUR"}
    instruments.orders_completed.add(2, attributes)
    meter.create_counter(name).add(1, dict(attributes))
    (point,) = _metric(reader, name).data.data_points
    assert point.value == 3
