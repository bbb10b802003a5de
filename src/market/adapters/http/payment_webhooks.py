"""Events from the payment provider: verified, deduplicated, applied once."""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency

from market.application.provider_events import ReceiveProviderEvent

from .openapi import problems

SIGNATURE_HEADERS = ("market-signature", "stripe-signature")

log = logging.getLogger(__name__)


class WebhookAck(msgspec.Struct):
    received: bool
    outcome: Literal["applied", "ignored", "duplicate", "unknown_order", "mismatched"]
    """`mismatched`: authentic, but its amount or currency is not the order's payment's; nothing changed."""


@post(
    "/webhooks/payments",
    operation_id="paymentProviderWebhook",
    tags=["webhooks"],
    status_code=200,
    responses=problems(400),
    request_max_body_size=256 * 1024,
)
async def payment_webhook(
    request: Request[Any, Any, Any], receive_provider_event: NamedDependency[ReceiveProviderEvent]
) -> WebhookAck:
    """Signed provider events (`Market-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
    300 s tolerance). A missing, malformed, bad or stale signature is a 400 and changes nothing; a duplicate
    event id is a 200, applied once. An authentic event whose amount or currency is not the order's payment's
    is a 200 `mismatched` and changes nothing."""
    header = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None)
    outcome = await receive_provider_event(await request.body(), header)
    if outcome == "mismatched":  # the provider's account and ours disagree: a person must look
        log.warning("a provider event's amount or currency does not match its order's payment: not applied")
    return WebhookAck(received=True, outcome=outcome)  # type: ignore[arg-type]
