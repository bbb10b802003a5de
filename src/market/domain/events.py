"""Past-tense facts the business wants to count. They leave the domain as data; adapters turn them into
metrics, span events and analytics rows."""

from __future__ import annotations

from dataclasses import dataclass

from .money import Money


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all domain events."""


@dataclass(frozen=True, slots=True)
class UserRegistered(Event):
    user_id: str
    role: str


@dataclass(frozen=True, slots=True)
class ItemListed(Event):
    item_id: str
    seller_id: str


@dataclass(frozen=True, slots=True)
class ItemViewed(Event):
    item_id: str
    seller_id: str


@dataclass(frozen=True, slots=True)
class SearchPerformed(Event):
    """A browse request with a text query. `query` is normalised (see catalog.normalise_query)."""

    query: str
    result_count: int


@dataclass(frozen=True, slots=True)
class CartChanged(Event):
    """A cart line was added to (`add`) or removed from (`remove`); quantity changes count by direction."""

    item_id: str
    action: str  # "add" or "remove"
    quantity_delta: int


@dataclass(frozen=True, slots=True)
class CheckoutStarted(Event):
    order_id: str
    total: Money
    line_count: int


@dataclass(frozen=True, slots=True)
class PaymentAttempted(Event):
    """One charge attempt and its outcome: `succeeded`, `declined` or `error` (processing counts as
    succeeded once the provider confirms it, see PaymentSettled)."""

    order_id: str
    outcome: str
    method: str
    amount: Money
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrderPaid(Event):
    order_id: str
    total: Money


@dataclass(frozen=True, slots=True)
class PaymentCapturedAfterFailure(Event):
    """The provider says it took the money (`payment.succeeded`) for an order we already settled as
    `payment_failed` (its stock released, its buyer told the card was declined). Nothing changes by itself: the
    buyer was charged for an order we will not fulfil, so a person must refund or fulfil it."""

    order_id: str
    payment_id: str
    event_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class RefundOfFailedPayment(Event):
    """The provider says it refunded (`payment.refunded`) the payment of an order we settled as `payment_failed`.
    Nothing to apply (no money of ours moved back; the order stays failed), but not silent: a refund follows a
    capture, so either a person already refunded a PaymentCapturedAfterFailure (the expected end of that case)
    or the provider took and returned money we never heard of. The buyer has their money back either way: a
    line for a person to check against the provider, not an alert."""

    order_id: str
    payment_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class OrderRefunded(Event):
    """One refund went through: `amount` of the order's money went back to the buyer, for `reason` (a
    bounded RefundReason value)."""

    order_id: str
    amount: Money
    reason: str
    refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookReceived(Event):
    """An authentic provider webhook was handled: `success` when it was understood and applied (or knowingly
    ignored), `failure` when it could not be: our problem (an error while applying it, or a signed event we do
    not understand)."""

    outcome: str


@dataclass(frozen=True, slots=True)
class WebhookRejected(Event):
    """A post to the provider webhook failed authentication: the caller's problem, not a failed delivery.
    `reason` is bounded (see `InvalidSignature`)."""

    reason: str
