"""A CLIENT span around every payment gateway call: `payment charge`, `payment lookup`, `payment refund`.

Attributes say who, how and what happened — provider, method, outcome, order — and never the card token.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from market.application.ports import (
    ChargeRequest,
    ChargeResult,
    PaymentGateway,
    RefundRequest,
    RefundResult,
)
from market.domain.orders import PaymentGatewayUnavailable
from market.telemetry import names


class TracedPaymentGateway:
    def __init__(self, inner: PaymentGateway, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer
        self.name = inner.name

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        attributes = {
            names.PAYMENT_PROVIDER: self.name,
            names.PAYMENT_METHOD: request.method,
            names.ORDER_ID: request.order_id,
            names.ORDER_TOTAL_CENTS: request.amount.cents,
            names.ORDER_CURRENCY: request.amount.currency,
        }
        with self._tracer.start_as_current_span(
            names.SPAN_PAYMENT_CHARGE, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                result = await self._inner.charge(request)
            except PaymentGatewayUnavailable as exc:
                span.set_attribute(names.PAYMENT_OUTCOME, "error")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, "payment provider unavailable"))
                raise
            span.set_attribute(names.PAYMENT_OUTCOME, result.status)
            return result

    async def lookup(self, order_id: str, payment_id: str) -> ChargeResult | None:
        attributes = {names.PAYMENT_PROVIDER: self.name, names.ORDER_ID: order_id}
        with self._tracer.start_as_current_span(
            names.SPAN_PAYMENT_LOOKUP, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            result = await self._inner.lookup(order_id, payment_id)
            span.set_attribute(names.PAYMENT_OUTCOME, result.status if result else "not_found")
            return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        attributes = {
            names.PAYMENT_PROVIDER: self.name,
            names.ORDER_ID: request.order_id,
            names.REFUND_AMOUNT_CENTS: request.amount.cents,
            names.ORDER_CURRENCY: request.amount.currency,
        }
        with self._tracer.start_as_current_span(
            names.SPAN_PAYMENT_REFUND, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                result = await self._inner.refund(request)
            except PaymentGatewayUnavailable as exc:
                span.set_attribute(names.PAYMENT_OUTCOME, "error")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, "payment provider unavailable"))
                raise
            span.set_attribute(names.PAYMENT_OUTCOME, result.status)
            return result

    async def close(self) -> None:
        await self._inner.close()
