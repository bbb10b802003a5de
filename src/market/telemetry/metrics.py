"""The meter provider and every instrument the service records, created once per process.

Instruments are declared in names.py; this module only builds them. Attribute values are bounded sets
(outcomes, methods, currencies, route templates): never ids, queries or e-mails.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackT, Counter, Histogram, Meter, ObservableCounter, _Gauge
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from market.domain.refunds import RefundReason

from . import names
from .drops import DROPS
from .tracing import chosen_exporters

# Seconds: exactly the explicit bucket boundaries the HTTP and DB semantic conventions advise for
# http.server.request.duration and db.client.operation.duration (no extra boundaries: dashboards and
# recording rules written against the conventions must find these `le` values).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
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
    item_views: Counter
    search_queries: Counter
    cart_changes: Counter
    checkout_started: Counter
    orders_completed: Counter
    refunds: Counter
    payment_attempts: Counter
    payment_amount: Histogram
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

    @classmethod
    def create(cls, meter: Meter) -> Instruments:
        instruments = cls._build(meter)
        zero_known_series(instruments)
        return instruments

    @classmethod
    def _build(cls, meter: Meter) -> Instruments:
        return cls(
            http_duration=histogram(meter, names.HTTP_SERVER_REQUEST_DURATION),
            item_views=counter(meter, names.ITEM_VIEWS),
            search_queries=counter(meter, names.SEARCH_QUERIES),
            cart_changes=counter(meter, names.CART_CHANGES),
            checkout_started=counter(meter, names.CHECKOUT_STARTED),
            orders_completed=counter(meter, names.ORDERS_COMPLETED),
            refunds=counter(meter, names.REFUNDS),
            payment_attempts=counter(meter, names.PAYMENT_ATTEMPTS),
            payment_amount=histogram(meter, names.PAYMENT_AMOUNT),
            webhook_deliveries=counter(meter, names.WEBHOOK_DELIVERIES),
            webhook_rejected=counter(meter, names.WEBHOOK_REJECTED),
            rate_limit_refused=counter(meter, names.RATE_LIMIT_REFUSED),
            telemetry_dropped=observable_counter(meter, names.TELEMETRY_DROPPED, [DROPS.observe]),
            funnel_sessions=gauge(meter, names.FUNNEL_SESSIONS),
            cart_abandonment_rate=gauge(meter, names.CART_ABANDONMENT_RATE),
            search_success_rate=gauge(meter, names.SEARCH_SUCCESS_RATE),
            session_duration=gauge(meter, names.SESSION_DURATION),
            probe_checks=counter(meter, names.PROBE_CHECKS),
            probe_duration=histogram(meter, names.PROBE_DURATION),
            probe_success=gauge(meter, names.PROBE_SUCCESS),
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


def otlp_metric_reader(environ: Mapping[str, str], *, required: bool = False) -> MetricReader | None:
    """A periodic OTLP exporter when an endpoint is configured (same variables as traces), or when
    OTEL_METRICS_EXPORTER=otlp asks for one (`required`: the SDK's default endpoint then)."""
    if not required and not (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    ):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return PeriodicExportingMetricReader(GrpcExporter())
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return PeriodicExportingMetricReader(HttpExporter())


def build_meter_provider(
    resource: Resource, readers: Sequence[MetricReader], environ: Mapping[str, str] | None = None
) -> MeterProvider:
    environ = {} if environ is None else environ  # the OTEL_* settings (TelemetrySettings.otel_environ)
    all_readers = list(readers)  # /metrics reads these whatever OTEL_METRICS_EXPORTER says
    chosen = chosen_exporters(environ, "OTEL_METRICS_EXPORTER")
    if "otlp" in chosen:
        otlp = otlp_metric_reader(environ, required=True)
        if otlp is not None:
            all_readers.append(otlp)
    if "console" in chosen:  # stderr: stdout carries the JSON log lines only
        all_readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
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
