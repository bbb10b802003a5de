"""Intake of the payment provider's webhook deliveries: authenticate, read, apply once, count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from market.domain.errors import InvalidProviderEvent
from market.domain.events import WebhookReceived, WebhookRejected

from .checkout import ApplyProviderEvent
from .ports import EventPublisher, InvalidProviderSignature, ProviderEventSource


async def receive_provider_event(
    body: bytes,
    signature: str | None,
    *,
    source: ProviderEventSource,
    apply: ApplyProviderEvent,
    events: EventPublisher,
) -> str:
    """Apply one delivery from the provider and return its outcome (`applied`, `ignored`, `duplicate`,
    `unknown_order`; see `apply_provider_event`). Raises InvalidProviderEvent when the signature does not
    authenticate the body (nothing changes) or an authentic body is not understood.

    Anyone can post a delivery: one that fails authentication is the caller's problem and is counted on its own,
    by reason (WebhookRejected), never as a failed delivery, which pages on-call. An authentic one that is not
    handled (a schema we do not understand, an error while applying) is ours to fix: WebhookReceived("failure").
    """
    try:
        source.verify(body, signature)
    except InvalidProviderSignature as exc:
        events.publish([WebhookRejected(exc.reason)])
        raise InvalidProviderEvent(f"The webhook signature is not valid: {exc}.") from None
    try:
        event = source.parse(body)
        outcome = "ignored" if event is None else await apply(event)
    except Exception:
        events.publish([WebhookReceived("failure")])
        raise
    events.publish([WebhookReceived("success")])
    return outcome


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

ReceiveProviderEvent = Callable[[bytes, str | None], Awaitable[str]]
"""(raw body, signature header)"""
