"""The meter provider and every instrument the service records, created once per process.

Instruments are declared in names.py; this module only builds them. Attribute values are bounded sets
(outcomes, methods, currencies, route templates): never ids, queries or e-mails.
"""

from __future__ import annotations

import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackT, Counter, Histogram, Meter, NoOpMeter, ObservableCounter, _Gauge
from opentelemetry.sdk.metrics import Exemplar, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Metric as MetricData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from market.domain.refunds import RefundReason

from . import names
from .drops import DROPS
from .local_metrics import LocalCounter, LocalHistogram
from .otlp_exporters import otlp_exporter
from .tracing import chosen_exporters

# Seconds: the explicit bucket boundaries the HTTP and DB semantic conventions advise for
# http.server.request.duration and db.client.operation.duration (dashboards and recording rules written
# against the conventions find these `le` values), plus 2: every latency alert threshold (MarketSlowRoute and
# in-app slow_api at 2 s, MarketSlowDatabaseQueries at 0.25 s) must be a bound, since histogram_quantile
# interpolates inside a bucket and a p95 in (1, 2.5] would read "over 2 s" while most requests took less.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2, 2.5, 5, 7.5, 10)
AMOUNT_BUCKETS_CENTS = (100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000)

NO_EXEMPLAR = Context({names.NO_EXEMPLAR_KEY: True})
"""The context to record in when a measurement must offer no exemplar: it holds no span. Not an empty Context,
which the SDK takes for "none given" (an empty one is falsy) and replaces with the current context, whose
sampled span it then offers."""

# The only place that creates instruments: each takes its (name, unit, description) from names.py, so that
# a metric's name and unit cannot drift between the modules that record it.
MetricSpec = tuple[str, str, str]


def counter(meter: Meter, spec: MetricSpec) -> Counter:
    """A counter declared in names.py."""
    name, unit, description = spec
    return meter.create_counter(name, unit=unit, description=description)


def histogram(meter: Meter, spec: MetricSpec) -> Histogram:
    """A histogram declared in names.py (its buckets are set by a view in build_meter_provider)."""
    name, unit, description = spec
    return meter.create_histogram(name, unit=unit, description=description)


def gauge(meter: Meter, spec: MetricSpec) -> _Gauge:
    """A synchronous gauge declared in names.py."""
    name, unit, description = spec
    return meter.create_gauge(name, unit=unit, description=description)


def observable_counter(meter: Meter, spec: MetricSpec, callbacks: Sequence[CallbackT]) -> ObservableCounter:
    """An observable counter declared in names.py, read through `callbacks` at each collection."""
    name, unit, description = spec
    return meter.create_observable_counter(name, callbacks=callbacks, unit=unit, description=description)


@dataclass(frozen=True, slots=True)
class Instruments:
    http_duration: Histogram
    db_duration: Histogram
    item_views: Counter
    search_queries: Counter
    cart_changes: Counter
    checkout_started: Counter
    orders_completed: Counter
    refunds: Counter
    payment_attempts: Counter
    payment_amount: Histogram
    payment_captured_after_failure: Counter
    webhook_deliveries: Counter
    webhook_rejected: Counter
    rate_limit_refused: Counter
    telemetry_dropped: ObservableCounter
    funnel_sessions: _Gauge
    cart_abandonment_rate: _Gauge
    search_success_rate: _Gauge
    session_duration: _Gauge
    probe_checks: Counter
    probe_duration: Histogram
    probe_success: _Gauge
    refunds_stuck: _Gauge

    @classmethod
    def create(cls, meter: Meter, reader: SharedMetricReader | None = None) -> Instruments:
        """`reader`: the process's; it aggregates the counters and histograms itself (local_metrics.py) when it is
        the only reader and the SDK is on (a disabled SDK's meter records nothing); else they are the SDK's."""
        local = reader if reader and reader.aggregates_alone and not isinstance(meter, NoOpMeter) else None
        instruments = cls._build(meter, local)
        zero_known_series(instruments)
        return instruments

    @classmethod
    def _build(cls, meter: Meter, local: SharedMetricReader | None) -> Instruments:
        def histogram_of(spec: MetricSpec, bounds: Sequence[float]) -> Histogram:
            return histogram(meter, spec) if local is None else local.histogram(spec, bounds)

        def counter_of(spec: MetricSpec) -> Counter:
            return counter(meter, spec) if local is None else local.counter(spec)

        return cls(
            http_duration=histogram_of(names.HTTP_SERVER_REQUEST_DURATION, DURATION_BUCKETS_S),
            db_duration=histogram_of(names.DB_CLIENT_OPERATION_DURATION, DURATION_BUCKETS_S),
            item_views=counter_of(names.ITEM_VIEWS),
            search_queries=counter_of(names.SEARCH_QUERIES),
            cart_changes=counter_of(names.CART_CHANGES),
            checkout_started=counter_of(names.CHECKOUT_STARTED),
            orders_completed=counter_of(names.ORDERS_COMPLETED),
            refunds=counter_of(names.REFUNDS),
            payment_attempts=counter_of(names.PAYMENT_ATTEMPTS),
            payment_amount=histogram_of(names.PAYMENT_AMOUNT, AMOUNT_BUCKETS_CENTS),
            payment_captured_after_failure=counter_of(names.PAYMENT_CAPTURED_AFTER_FAILURE),
            webhook_deliveries=counter_of(names.WEBHOOK_DELIVERIES),
            webhook_rejected=counter_of(names.WEBHOOK_REJECTED),
            rate_limit_refused=counter_of(names.RATE_LIMIT_REFUSED),
            telemetry_dropped=observable_counter(meter, names.TELEMETRY_DROPPED, [DROPS.observe]),
            funnel_sessions=gauge(meter, names.FUNNEL_SESSIONS),
            cart_abandonment_rate=gauge(meter, names.CART_ABANDONMENT_RATE),
            search_success_rate=gauge(meter, names.SEARCH_SUCCESS_RATE),
            session_duration=gauge(meter, names.SESSION_DURATION),
            probe_checks=counter_of(names.PROBE_CHECKS),
            probe_duration=histogram_of(names.PROBE_DURATION, DURATION_BUCKETS_S),
            probe_success=gauge(meter, names.PROBE_SUCCESS),
            refunds_stuck=gauge(meter, names.REFUNDS_STUCK),
        )


# Every series of a bounded label set exists from the start, at zero: the first decline, gateway error or
# rejected webhook then moves increase() and rate(), instead of appearing at 1 (which Prometheus cannot tell
# from a series that was always 1; the `_created` of OpenMetrics would, but Prometheus 2.42 ignores it). The
# request duration's 5xx series are added at render time instead (prometheus.with_known_series): a histogram
# cannot record a zero count.
PAYMENT_OUTCOMES = ("succeeded", "declined", "error")
PAYMENT_METHODS = ("card",)
SEARCH_OUTCOMES = ("results", "no_results")
CART_ACTIONS = ("add", "remove")
WEBHOOK_DIRECTIONS = ("inbound", "outbound")
WEBHOOK_OUTCOMES = ("success", "failure")
REFUND_REASONS = tuple(reason.value for reason in RefundReason)
WEBHOOK_REJECTION_REASONS = ("missing_signature", "malformed", "stale_signature", "bad_signature")
PROBE_OUTCOMES = ("success", "failure")
# Orders paid by currency are not zeroed: a zero for every ISO 4217 code would be ~150 points in every OTLP export
# for currencies a shop may never use. The first paid order is seen at zero in the payment attempts' `succeeded`.


def zero_known_series(m: Instruments) -> None:
    for outcome in PAYMENT_OUTCOMES:
        for method in PAYMENT_METHODS:
            m.payment_attempts.add(0, {names.PAYMENT_OUTCOME: outcome, names.PAYMENT_METHOD: method})
    for outcome in SEARCH_OUTCOMES:
        m.search_queries.add(0, {names.SEARCH_OUTCOME: outcome})
    for action in CART_ACTIONS:
        m.cart_changes.add(0, {names.CART_ACTION: action})
    for direction in WEBHOOK_DIRECTIONS:
        for outcome in WEBHOOK_OUTCOMES:
            m.webhook_deliveries.add(0, {names.WEBHOOK_DIRECTION: direction, names.WEBHOOK_OUTCOME: outcome})
    for reason in WEBHOOK_REJECTION_REASONS:
        m.webhook_rejected.add(0, {names.WEBHOOK_REJECTION_REASON: reason})
    for outcome in PROBE_OUTCOMES:
        m.probe_checks.add(0, {names.PROBE_OUTCOME: outcome})
    for reason in REFUND_REASONS:
        m.refunds.add(0, {names.REFUND_REASON: reason})
    m.item_views.add(0)
    m.checkout_started.add(0)
    m.payment_captured_after_failure.add(0)


PointKey = tuple[str, str, frozenset[tuple[str, Any]]]
"""(instrumentation scope, metric name, point attributes): one series."""


def _map_points(data: MetricsData, change: Callable[[PointKey, Any], Any]) -> MetricsData:
    """`data` with each point replaced by `change(its series, point)` (the SDK's data classes are frozen)."""

    def metric(scope: str, m: MetricData) -> MetricData:
        points = [change((scope, m.name, frozenset(p.attributes.items())), p) for p in m.data.data_points]
        return replace(m, data=replace(m.data, data_points=points))

    return replace(
        data,
        resource_metrics=[
            replace(
                r,
                scope_metrics=[
                    replace(s, metrics=[metric(s.scope.name, m) for m in s.metrics]) for s in r.scope_metrics
                ],
            )
            for r in data.resource_metrics
        ],
    )


def _with_local(data: MetricsData | None, local: list[MetricData], resource: Resource) -> MetricsData:
    """`data` with the local metrics in the service's scope. One the SDK aggregated too under the same name
    (an instrument made through the global meter, e.g. by a `Database` built before telemetry was installed)
    is merged into them: a metric appears once."""
    ours = ScopeMetrics(InstrumentationScope(names.INSTRUMENTATION_SCOPE), local, "")
    if data is None or not data.resource_metrics:
        return MetricsData([ResourceMetrics(resource, [ours], "")])
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    at = next((i for i, s in enumerate(scopes) if s.scope.name == names.INSTRUMENTATION_SCOPE), None)
    if at is None:
        scopes.append(ours)
    else:
        metrics = list(scopes[at].metrics)
        index = {m.name: i for i, m in enumerate(metrics)}
        for metric in local:
            i = index.get(metric.name)
            if i is None:
                metrics.append(metric)
            else:
                metrics[i] = _merged(metrics[i], metric)
        scopes[at] = replace(scopes[at], metrics=metrics)
    return replace(data, resource_metrics=[replace(first, scope_metrics=scopes), *rest])


def _merged(theirs: MetricData, ours: MetricData) -> MetricData:
    if type(theirs.data) is not type(ours.data):
        return ours
    points = {frozenset(p.attributes.items()): p for p in theirs.data.data_points}
    for point in ours.data.data_points:
        key = frozenset(point.attributes.items())
        other = points.get(key)
        points[key] = point if other is None else _sum(other, point)
    return replace(ours, data=replace(ours.data, data_points=list(points.values())))


def _sum(a: Any, b: Any) -> Any:
    """Two points of one series, summed (`b`: the service's own)."""
    start = min(a.start_time_unix_nano, b.start_time_unix_nano)
    # oldest first: the shared reader keeps the last one per bucket
    exemplars = sorted([*a.exemplars, *b.exemplars], key=lambda e: e.time_unix_nano)
    if not isinstance(b, HistogramDataPoint):  # a counter's
        return replace(b, start_time_unix_nano=start, value=a.value + b.value, exemplars=exemplars)
    if tuple(a.explicit_bounds) != tuple(b.explicit_bounds):
        return b
    return replace(
        b,
        start_time_unix_nano=start,
        count=a.count + b.count,
        sum=a.sum + b.sum,
        bucket_counts=[x + y for x, y in zip(a.bucket_counts, b.bucket_counts, strict=True)],
        min=min(a.min, b.min),
        max=max(a.max, b.max),
        exemplars=exemplars,
    )


class _Push(PeriodicExportingMetricReader):
    """Exports what the shared reader collects, on the SDK's own timer, timeout, export lock and shutdown. Never
    registered with the meter provider, so it aggregates nothing itself."""

    def __init__(self, exporter: MetricExporter, source: SharedMetricReader) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._sent_up_to = 0
        """The newest exemplar exported so far (ns): each is exported once, as the SDK's own readers do."""
        super().__init__(exporter)

    def collect(self, timeout_millis: float = 10_000) -> None:
        with self._lock:  # the timer's thread, force_flush and shutdown may call at once
            data = self._source.get_metrics_data()
            if data is None:
                return
            sent_up_to = self._sent_up_to

            def unsent(_: PointKey, point: Any) -> Any:
                nonlocal sent_up_to
                fresh = [e for e in point.exemplars if e.time_unix_nano > self._sent_up_to]
                sent_up_to = max([sent_up_to, *(e.time_unix_nano for e in fresh)])
                return replace(point, exemplars=fresh)

            self._receive_metrics(_map_points(data, unsent), timeout_millis=timeout_millis)
            self._sent_up_to = sent_up_to


class SharedMetricReader(InMemoryMetricReader):
    """This process's one aggregation of its measurements: `/metrics` reads it (`get_metrics_data`) and each
    exporter (OTLP, console) is pushed what it collects, on the exporter's interval. The usual set-up, one reader
    per exporter, aggregates every measurement once per reader: with OTLP on, the second reader doubled the SDK's
    work for each measurement on the request path (benchmarks/README.md). Exports are cumulative, as the exporters
    prefer by default; one that asks for delta temporality gets a reader of its own (build_meter_provider).

    The SDK hands out each exemplar once (its reservoirs reset at every collection), and /metrics and the
    exporters each collect on their own schedule: every collection here carries the latest exemplar per series
    and bucket seen by any of them, until a newer one replaces it."""

    def __init__(self, resource: Resource | None = None) -> None:
        super().__init__()
        self._resource = resource or Resource.get_empty()
        self._pushes: list[_Push] = []
        self._exemplars_lock = threading.Lock()
        self._latest: dict[PointKey, dict[int, Exemplar]] = {}
        self._local: list[LocalCounter | LocalHistogram] = []
        self.aggregates_alone = True
        """No other reader collects from the meter provider (build_meter_provider clears it when an exporter
        gets a reader of its own): then counters and histograms may be aggregated here (`counter`, `histogram`)."""

    def push_to(self, exporter: MetricExporter) -> None:
        self._pushes.append(_Push(exporter, self))

    def histogram(self, spec: MetricSpec, bounds: Sequence[float]) -> LocalHistogram:
        """A histogram aggregated by the service itself, in every collection of this reader."""
        made = LocalHistogram(*spec, bounds)
        self._local.append(made)
        return made

    def counter(self, spec: MetricSpec) -> LocalCounter:
        """A counter aggregated by the service itself, in every collection of this reader."""
        made = LocalCounter(*spec)
        self._local.append(made)
        return made

    def get_metrics_data(self) -> MetricsData | None:
        data = super().get_metrics_data()
        local = [metric for metric in (h.collect() for h in self._local) if metric is not None]
        if local:
            data = _with_local(data, local, self._resource)
        if data is None:
            return None
        with self._exemplars_lock:
            return _map_points(data, self._with_latest_exemplars)

    def _with_latest_exemplars(self, key: PointKey, point: Any) -> Any:
        kept = self._latest.get(key)
        if point.exemplars:
            if kept is None:
                kept = self._latest[key] = {}
            bounds = getattr(point, "explicit_bounds", None)  # histograms: one per bucket
            for at, exemplar in enumerate(point.exemplars):
                kept[bisect_left(bounds, exemplar.value) if bounds is not None else at] = exemplar
        return point if kept is None else replace(point, exemplars=[e for _, e in sorted(kept.items())])

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return all(push.force_flush(timeout_millis) for push in self._pushes)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        deadline = time.monotonic() + timeout_millis / 1000
        for push in self._pushes:  # each exports once more, then stops its exporter
            push.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)


def _cumulative(exporter: MetricExporter) -> bool:
    preferred = exporter._preferred_temporality or {}  # the SDK keeps an exporter's preference there
    return all(t is AggregationTemporality.CUMULATIVE for t in preferred.values())


def build_meter_provider(
    resource: Resource, reader: SharedMetricReader, environ: Mapping[str, str] | None = None
) -> MeterProvider:
    """`reader`: what /metrics reads, whatever OTEL_METRICS_EXPORTER says; the chosen exporters are pushed
    what it collects."""
    environ = {} if environ is None else environ  # the OTEL_* settings (TelemetrySettings.otel_environ)
    chosen = chosen_exporters(environ, "OTEL_METRICS_EXPORTER")
    exporters: list[MetricExporter] = []
    if "otlp" in chosen:
        exporters.append(otlp_exporter(environ, "METRICS"))
    if "console" in chosen:  # stderr: stdout carries the JSON log lines only
        exporters.append(ConsoleMetricExporter(out=sys.stderr))
    all_readers: list[MetricReader] = [reader]
    for exporter in exporters:
        if _cumulative(exporter):
            reader.push_to(exporter)
        else:
            all_readers.append(PeriodicExportingMetricReader(exporter))
            reader.aggregates_alone = False
    views = [
        View(
            instrument_name=names.HTTP_SERVER_REQUEST_DURATION[0],
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
        ),
        View(
            instrument_name=names.DB_CLIENT_OPERATION_DURATION[0],
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
        ),
        View(
            instrument_name=names.PROBE_DURATION[0],
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
        ),
        View(
            instrument_name=names.PAYMENT_AMOUNT[0],
            aggregation=ExplicitBucketHistogramAggregation(AMOUNT_BUCKETS_CENTS),
        ),
    ]
    return MeterProvider(resource=resource, metric_readers=all_readers, views=views)
