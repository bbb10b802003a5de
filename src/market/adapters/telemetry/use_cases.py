"""Business spans around bound use cases, applied in bootstrap: the use cases themselves know nothing of
OpenTelemetry (an import contract says so), and the controllers that call them stay thin.

- `traced_checkout`: the `checkout.place_order` span, with the order's id, total, currency, line count and
  outcome; the checkout records the server span's `traceparent` so that later provider events link back to it.
- `traced_apply_provider_event`: the `payment.webhook.apply` span, linked (and the server span with it) to the
  trace that created the payment: a provider event starts a trace of its own, and the link is how an SRE walks
  back to the checkout.
- `traced_refund_order`: the `order.refund` span, with the order, the refund's id, amount, reason and outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode, Tracer

from market.application.checkout import ApplyProviderEvent, PaymentMethodInput, PlaceOrder
from market.application.ports import ProviderEvent, UnitOfWorkFactory
from market.application.refunds import RefundOrder
from market.domain import errors
from market.domain.orders import Order, PaymentGatewayUnavailable
from market.domain.refunds import Refund, RefundPending, RefundReason
from market.domain.users import User
from market.telemetry import names
from market.telemetry.asgi import span_context_from_traceparent


def traced_checkout(checkout: Callable[..., Awaitable[Order]], tracer: Tracer) -> PlaceOrder:
    """`checkout` (its ports bound, `traceparent` left open) inside its business span."""

    async def place_order(buyer: User, method: PaymentMethodInput) -> Order:
        traceparent = current_traceparent()  # the server span's: provider events link back to it
        # Expected outcomes (declined, out of stock) leave the span's status alone: only our failures are errors.
        with tracer.start_as_current_span(
            names.SPAN_CHECKOUT_PLACE_ORDER, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                order = await checkout(buyer, method, traceparent=traceparent)
            except errors.DomainError as exc:
                order_id = getattr(exc, "order_id", None)
                if order_id:
                    span.set_attribute(names.ORDER_ID, order_id)
                span.set_attribute(names.CHECKOUT_OUTCOME, type(exc).__name__)
                if isinstance(exc, PaymentGatewayUnavailable):
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, "payment provider unavailable"))
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attributes(
                {
                    names.ORDER_ID: order.id,
                    names.ORDER_TOTAL_CENTS: order.total.cents,
                    names.ORDER_CURRENCY: order.total.currency,
                    names.CART_LINE_COUNT: len(order.lines),
                    names.CHECKOUT_OUTCOME: order.status.value,
                }
            )
            return order

    return place_order


def traced_apply_provider_event(
    apply: ApplyProviderEvent, uow: UnitOfWorkFactory, tracer: Tracer
) -> ApplyProviderEvent:
    """`apply` inside the `payment.webhook.apply` span, linked to the checkout's trace (read from the order)."""

    async def apply_traced(event: ProviderEvent) -> str:
        async with uow() as work:
            order = await work.orders.get(event.order_id)
        links = []
        checkout_context = span_context_from_traceparent(order.traceparent if order else None)
        if checkout_context is not None:
            links.append(Link(checkout_context))
            trace.get_current_span().add_link(checkout_context)
        attributes = {names.ORDER_ID: event.order_id, names.PAYMENT_EVENT_TYPE: event.type}
        with tracer.start_as_current_span(
            names.SPAN_PAYMENT_WEBHOOK_APPLY, links=links, attributes=attributes
        ) as span:
            outcome = await apply(event)
            span.set_attribute(names.PAYMENT_EVENT_OUTCOME, outcome)
            return outcome

    return apply_traced


def traced_refund_order(refund_order: RefundOrder, tracer: Tracer) -> RefundOrder:
    """`refund_order` inside the `order.refund` span. Refusals (409s, a declined refund) are outcomes, not
    errors of ours; a provider that does not answer is."""

    async def refund_traced(
        admin: User,
        order_id: str,
        amount_cents: int | None,
        reason: RefundReason,
        *,
        idempotency_key: str | None = None,
    ) -> Refund:
        attributes = {names.ORDER_ID: order_id, names.REFUND_REASON: reason.value}
        with tracer.start_as_current_span(
            names.SPAN_ORDER_REFUND,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                refund = await refund_order(
                    admin, order_id, amount_cents, reason, idempotency_key=idempotency_key
                )
            except errors.DomainError as exc:
                span.set_attribute(names.REFUND_OUTCOME, type(exc).__name__)
                if isinstance(exc, RefundPending):
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, "payment provider unavailable"))
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attributes(
                {
                    names.REFUND_ID: refund.id,
                    names.REFUND_AMOUNT_CENTS: refund.amount.cents,
                    names.ORDER_CURRENCY: refund.amount.currency,
                    names.REFUND_OUTCOME: refund.status.value,
                }
            )
            return refund

    return refund_traced


def current_traceparent() -> str | None:
    """The W3C reference of the current span (the request's server span): where this order was created."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
