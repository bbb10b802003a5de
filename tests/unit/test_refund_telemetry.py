"""A refund's telemetry: the `order.refund` span around the use case (its attributes; an error status only when
the provider did not answer) and the `market.refunds` counter by reason, counted once the refund went through."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from market.adapters.telemetry.events import OtelEventPublisher
from market.adapters.telemetry.use_cases import traced_refund_order
from market.application.refunds import refund_order
from market.domain.events import OrderRefunded
from market.domain.money import Money
from market.domain.refunds import RefundExceedsBalance, RefundPending, RefundReason
from market.telemetry import names
from market.telemetry.metrics import Instruments, SharedMetricReader, build_meter_provider
from tests.support.world import ADMIN, World


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def world_and_refund(spans):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    world = World().stock_shelves()

    async def bound(admin, order_id, amount_cents, reason, *, idempotency_key=None):
        return await refund_order(
            admin,
            order_id,
            amount_cents,
            reason,
            idempotency_key=idempotency_key,
            ports=world.admin,
            gateway=world.gateway,
        )

    return world, traced_refund_order(bound, provider.get_tracer("test"))


async def paid(world: World):
    await world.put("mug", 1)
    return await world.checkout("tok_visa")


async def test_a_refund_runs_in_its_span_with_its_figures(world_and_refund, spans):
    world, refund = world_and_refund
    order = await paid(world)
    done = await refund(ADMIN, order.id, 500, RefundReason.DAMAGED)
    [span] = [s for s in spans.get_finished_spans() if s.name == names.SPAN_ORDER_REFUND]
    assert dict(span.attributes) == {
        names.ORDER_ID: order.id,
        names.REFUND_REASON: "damaged",
        names.REFUND_ID: done.id,
        names.REFUND_AMOUNT_CENTS: 500,
        names.ORDER_CURRENCY: "EUR",
        names.REFUND_OUTCOME: "succeeded",
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_a_refusal_is_an_outcome_and_a_silent_provider_an_error(world_and_refund, spans):
    world, refund = world_and_refund
    order = await paid(world)
    with pytest.raises(RefundExceedsBalance):
        await refund(ADMIN, order.id, 10**6, RefundReason.OTHER)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await refund(ADMIN, order.id, 100, RefundReason.OTHER)
    refused, silent = [s for s in spans.get_finished_spans() if s.name == names.SPAN_ORDER_REFUND]
    assert refused.attributes[names.REFUND_OUTCOME] == "RefundExceedsBalance"
    assert refused.status.status_code is StatusCode.UNSET and not refused.events
    assert silent.attributes[names.REFUND_OUTCOME] == "RefundPending"
    assert silent.status.status_code is StatusCode.ERROR


def test_each_refund_counts_once_by_reason_and_every_reason_starts_at_zero():
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, {})
    try:
        publisher = OtelEventPublisher(Instruments.create(provider.get_meter("t")))
        publisher.publish([OrderRefunded("o-1", Money(500, "EUR"), "damaged", "r-1")])
        publisher.publish([OrderRefunded("o-2", Money(100, "EUR"), "duplicate", "r-2")])
        publisher.publish([OrderRefunded("o-1", Money(900, "EUR"), "damaged", "r-3")])
        points = {
            point.attributes[names.REFUND_REASON]: point.value
            for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
            if metric.name == names.REFUNDS[0]
            for point in metric.data.data_points
        }
    finally:
        provider.shutdown()
    assert points == {reason.value: 0 for reason in RefundReason} | {"damaged": 2, "duplicate": 1}
