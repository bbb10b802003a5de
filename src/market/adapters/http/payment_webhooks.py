"""Events from the payment provider: verified, deduplicated, applied once."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency

from market.application.provider_events import ReceiveProviderEvent

from .openapi import problems

SIGNATURE_HEADERS = ("market-signature", "stripe-signature")


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
async def payment_webhook(
    request: Request[Any, Any, Any], receive_provider_event: NamedDependency[ReceiveProviderEvent]
) -> WebhookAck:
    """Signed provider events (`Market-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
    300 s tolerance). A missing, malformed, bad or stale signature is a 400 and changes nothing; a duplicate
    event id is a 200, applied once."""
    header = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None)
    outcome = await receive_provider_event(await request.body(), header)
    return WebhookAck(received=True, outcome=outcome)  # type: ignore[arg-type]
