"""Events from the payment provider: verified, deduplicated, applied once."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, post
from opentelemetry import trace
from opentelemetry.trace import Link

from market.adapters.payments.signature import InvalidSignature, verify
from market.adapters.payments.stripe import InvalidStripeEvent, parse_stripe_event
from market.application import checkout as checkout_use_cases
from market.application.services import Services
from market.domain.errors import InvalidProviderEvent
from market.domain.events import WebhookReceived, WebhookRejected
from market.telemetry import names
from market.telemetry.asgi import span_context_from_traceparent

from .openapi import problems

SIGNATURE_HEADERS = ("market-signature", "stripe-signature")


class EventData(msgspec.Struct):
    order_id: str
    payment_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    reason: str | None = None


class ProviderEventBody(msgspec.Struct):
    id: str
    type: Literal["payment.succeeded", "payment.failed", "payment.refunded"]
    created: int
    data: EventData


class WebhookAck(msgspec.Struct):
    received: bool
    outcome: Literal["applied", "ignored", "duplicate", "unknown_order"]


@post(
    "/webhooks/payments",
    operation_id="paymentProviderWebhook",
    tags=["webhooks"],
    status_code=200,
    responses=problems(400),
    request_max_body_size=256 * 1024,
)
async def payment_webhook(request: Request[Any, Any, Any], services: Services) -> WebhookAck:
    """Signed provider events (`Market-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
    300 s tolerance). A missing, malformed, bad or stale signature is a 400 and changes nothing; a duplicate
    event id is a 200, applied once."""
    body = await request.body()
    header = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None)
    try:
        verify(services.payment_webhook_secret, body, header)
    except InvalidSignature as exc:
        # Anyone can post here: a request that fails authentication is the caller's problem. It is counted on
        # its own, by reason, and never as a failed delivery, which pages on-call.
        services.events.publish([WebhookRejected(exc.reason)])
        raise InvalidProviderEvent(f"The webhook signature is not valid: {exc}.") from None
    try:
        event = _parse(body, services)
        outcome = "ignored" if event is None else await _apply(event, services)
    except Exception:
        # Authentic, yet not handled: ours to fix (a schema we do not understand, an error while applying).
        services.events.publish([WebhookReceived("failure")])
        raise
    services.events.publish([WebhookReceived("success")])
    return WebhookAck(received=True, outcome=outcome)  # type: ignore[arg-type]


def _parse(body: bytes, services: Services) -> checkout_use_cases.ProviderEvent | None:
    """The event in a body whose signature checked out; None for a Stripe event that is not about our orders
    (other types, partial refunds), which is acknowledged so that Stripe stops redelivering it."""
    try:
        if services.gateway.name == "stripe":
            return parse_stripe_event(body)
        event = msgspec.json.decode(body, type=ProviderEventBody)
    except (InvalidStripeEvent, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidProviderEvent(f"The event is not one this endpoint understands: {exc}.") from None
    return checkout_use_cases.ProviderEvent(
        id=event.id,
        type=event.type,
        order_id=event.data.order_id,
        provider_payment_id=event.data.payment_id,
        reason=event.data.reason,
    )


async def _apply(event: checkout_use_cases.ProviderEvent, services: Services) -> str:
    """Apply the event in a `payment.webhook.apply` span linked to the trace that created the payment
    (a provider event starts a trace of its own: the link is how an SRE walks back to the checkout)."""
    links = []
    async with services.uow() as work:
        order = await work.orders.get(event.order_id)
    checkout_context = span_context_from_traceparent(order.traceparent if order else None)
    if checkout_context is not None:
        links.append(Link(checkout_context))
        trace.get_current_span().add_link(checkout_context)
    attributes = {names.ORDER_ID: event.order_id, names.PAYMENT_EVENT_TYPE: event.type}
    with trace.get_tracer(names.INSTRUMENTATION_SCOPE).start_as_current_span(
        names.SPAN_PAYMENT_WEBHOOK_APPLY, links=links, attributes=attributes
    ) as span:
        outcome = await checkout_use_cases.apply_provider_event(
            event, uow=services.uow, clock=services.clock, events=services.events
        )
        span.set_attribute(names.PAYMENT_EVENT_OUTCOME, outcome)
        return outcome
