"""The provider's webhook deliveries (the ProviderEventSource port): signed with one shared secret (see
`signature`), in the configured gateway's own format: the sandbox's events, or Stripe's."""

from __future__ import annotations

import dataclasses
import re
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
        # payment.refunded with an amount: a refund of that much; without one: of the whole payment. Otherwise
        # the payment's amount, checked against the order's.
        amount_cents=event.data.amount_cents,
        currency=event.data.currency,
    )


MAX_ID = 255
"""The longest id an event may carry (the stored event, payment and refund ids are VARCHAR(255))."""
MAX_REASON = 64
"""A decline reason is kept to this (payments.failure_reason); longer ones are cut, not refused."""
_CURRENCY = re.compile(r"[A-Z]{3}")


def storable(event: ProviderEvent | None) -> ProviderEvent | None:
    """`event` as it can be stored, whatever the provider's format: an id that no column could hold (empty,
    longer than MAX_ID, a NUL, a lone surrogate) or an amount outside 0..2^63-1 makes the event not understood
    (InvalidProviderEvent: a 400, the provider hears of it) rather than a failed insert (a 500 it would retry
    for days); a decline reason, only ever shown, is cut to MAX_REASON and loses its NULs."""
    if event is None:
        return None
    for name in ("id", "order_id", "provider_payment_id", "refund_id", "provider_refund_id"):
        value = getattr(event, name)
        if value is not None and not _storable_id(value):
            raise InvalidProviderEvent(f"The event's {name} is not an id this endpoint understands.")
    if event.amount_cents is not None and not 0 <= event.amount_cents < 2**63:
        raise InvalidProviderEvent("The event's amount is out of range.")
    if event.currency is not None and not _CURRENCY.fullmatch(event.currency):
        raise InvalidProviderEvent("The event's currency is not an ISO 4217 code.")
    if event.reason is not None:
        reason = event.reason.replace("\x00", "")[:MAX_REASON].encode("utf-8", "replace").decode("utf-8")
        event = dataclasses.replace(event, reason=reason or None)
    return event


def _storable_id(value: str) -> bool:
    if not 0 < len(value) <= MAX_ID or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON)
        return False
    return True


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
            return storable(self._parse(body))
        except (InvalidStripeEvent, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidProviderEvent(f"The event is not one this endpoint understands: {exc}.") from None
