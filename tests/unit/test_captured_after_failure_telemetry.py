"""Money the provider took for an order we settled as failed never vanishes: a counter an operator alerts on (at 0
from the start, so the first one moves `increase()`), a WARNING line with ids only, and a span event."""

from __future__ import annotations

import logging

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from market.adapters.telemetry.events import OtelEventPublisher
from market.domain.events import PaymentCapturedAfterFailure, RefundOfFailedPayment
from market.domain.money import Money
from market.telemetry import names
from market.telemetry.metrics import Instruments, SharedMetricReader, build_meter_provider

CAPTURED = PaymentCapturedAfterFailure("o-1", "p-1", "evt_1", Money(1999, "EUR"))


def _counted(reader: SharedMetricReader) -> list[float]:
    return [
        point.value
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if metric.name == names.PAYMENT_CAPTURED_AFTER_FAILURE[0]
        for point in metric.data.data_points
    ]


def test_money_captured_for_a_failed_order_is_counted_from_zero_and_logged_with_ids_only(caplog):
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, {})
    try:
        publisher = OtelEventPublisher(Instruments.create(provider.get_meter("t")))
        assert _counted(reader) == [0]
        with caplog.at_level(logging.WARNING, logger="market.adapters.telemetry.events"):
            publisher.publish([CAPTURED])
        assert _counted(reader) == [1]
    finally:
        provider.shutdown()
    [record] = [r for r in caplog.records if r.name == "market.adapters.telemetry.events"]
    assert record.levelno == logging.WARNING
    assert (record.order_id, record.payment_id, record.provider_event_id) == ("o-1", "p-1", "evt_1")


def test_money_captured_for_a_failed_order_is_a_span_event():
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("POST /api/v1/webhooks/payments") as span:
        OtelEventPublisher().publish([CAPTURED])
    [event] = span.events
    assert event.name == names.EVENT_PAYMENT_CAPTURED_AFTER_FAILURE
    assert dict(event.attributes) == {
        names.ORDER_ID: "o-1",
        names.ORDER_TOTAL_CENTS: 1999,
        names.ORDER_CURRENCY: "EUR",
    }


def test_a_refund_of_a_failed_orders_payment_is_a_warning_with_ids_only_and_nothing_counted(caplog):
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, {})
    try:
        publisher = OtelEventPublisher(Instruments.create(provider.get_meter("t")))
        with caplog.at_level(logging.WARNING, logger="market.adapters.telemetry.events"):
            publisher.publish([RefundOfFailedPayment("o-1", "p-1", "evt_2")])
        assert _counted(reader) == [0], "not a capture"
    finally:
        provider.shutdown()
    [record] = [r for r in caplog.records if r.name == "market.adapters.telemetry.events"]
    assert record.levelno == logging.WARNING
    assert (record.order_id, record.payment_id, record.provider_event_id) == ("o-1", "p-1", "evt_2")
