"""The provider's webhook deliveries (the ProviderEventSource port): signed with one shared secret (see
`signature`), in the configured gateway's own format: the sandbox's events, or Stripe's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from market.application.ports import ProviderEvent
from market.domain.errors import InvalidProviderEvent

from .signature import verify
from .stripe import InvalidStripeEvent, parse_stripe_event


class _EventData(msgspec.Struct):
    order_id: str
    payment_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    reason: str | None = None
    refund_id: str | None = None
    provider_refund_id: str | None = None


class _SandboxEventBody(msgspec.Struct):
    id: str
    type: Literal["payment.succeeded", "payment.failed", "payment.refunded"]
    created: int
    data: _EventData


def parse_sandbox_event(body: bytes) -> ProviderEvent:
    """The sandbox gateway's event (the format API.md documents for `POST /webhooks/payments`)."""
    event = msgspec.json.decode(body, type=_SandboxEventBody)
    return ProviderEvent(
        id=event.id,
        type=event.type,
        order_id=event.data.order_id,
        provider_payment_id=event.data.payment_id,
        reason=event.data.reason,
        refund_id=event.data.refund_id if event.type == "payment.refunded" else None,
        provider_refund_id=event.data.provider_refund_id if event.type == "payment.refunded" else None,
        # payment.refunded with an amount: a refund of that much; without one: of the whole payment
        amount_cents=event.data.amount_cents if event.type == "payment.refunded" else None,
    )


class SignedProviderEvents:
    """Deliveries signed with `secret`, read by `parse` (`parse_sandbox_event` or `parse_stripe_event`, as the
    configured gateway sends them)."""

    def __init__(self, secret: str, parse: Callable[[bytes], ProviderEvent | None]) -> None:
        self._secret = secret
        self._parse = parse

    def __repr__(self) -> str:
        return f"SignedProviderEvents(parse={self._parse.__name__})"  # never the secret

    @classmethod
    def for_gateway(cls, gateway_name: str, secret: str) -> SignedProviderEvents:
        return cls(secret, parse_stripe_event if gateway_name == "stripe" else parse_sandbox_event)

    def verify(self, body: bytes, signature: str | None) -> None:
        verify(self._secret, body, signature)

    def parse(self, body: bytes) -> ProviderEvent | None:
        try:
            return self._parse(body)
        except (InvalidStripeEvent, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidProviderEvent(f"The event is not one this endpoint understands: {exc}.") from None
