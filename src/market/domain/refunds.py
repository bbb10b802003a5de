"""Refunds: money the marketplace gives back on a paid order, never more than what is left of it.

A refund is `pending` from the moment it is decided (its amount is then taken from what is left, so two
refunds decided at once cannot both take the same money) until the provider answers: `succeeded`, or `failed`
(its amount is left again). The order follows its succeeded refunds: `partially_refunded`, then `refunded` when
nothing is left."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .analytics import proportional_shares
from .errors import DomainError, FieldError, ValidationFailed
from .money import MAX_CENTS, Money
from .orders import PAID_STATES, Order, OrderStatus, PaymentStatus


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundReason(StrEnum):
    """Why the money goes back. A closed list: it is a metric attribute (`market.refund.reason`) and a report
    dimension, so free text would make both unbounded."""

    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    NOT_RECEIVED = "not_received"
    DAMAGED = "damaged"
    OTHER = "other"
    PROVIDER = "provider"
    """Refunded at the payment provider itself (its dashboard), learnt from its event: never chosen by an
    admin."""


ADMIN_REASONS = tuple(reason for reason in RefundReason if reason is not RefundReason.PROVIDER)
"""The reasons an admin may give."""

HOLDS_MONEY = frozenset({RefundStatus.PENDING, RefundStatus.SUCCEEDED})
"""Refunds whose amount is no longer left to refund."""


class OrderNotRefundable(DomainError):
    """Only a paid (or partly refunded) order can be refunded."""

    def __init__(self, status: OrderStatus) -> None:
        super().__init__(
            f"This order is {status.value.replace('_', ' ')}; only a paid order can be refunded."
            if status is not OrderStatus.REFUNDED
            else "This order is refunded in full already; nothing is left to refund."
        )
        self.status = status


class RefundExceedsBalance(DomainError):
    """More than what is left of the order (its total less what is refunded or being refunded)."""

    def __init__(self, asked: Money, left: Money) -> None:
        super().__init__(
            f"Only {left.cents} {left.currency} minor units are left to refund on this order; "
            f"{asked.cents} were asked."
        )
        self.asked = asked
        self.left = left


class RefundDeclined(DomainError):
    """The payment provider refused the refund (nothing was refunded; its amount is left again)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The payment provider refused the refund ({reason.replace('_', ' ')}).")
        self.reason = reason


class RefundPending(DomainError):
    """The payment provider did not answer: the refund stays pending (its amount held) until it does."""

    def __init__(self) -> None:
        super().__init__(
            "The payment provider is not answering right now. The refund is kept pending; retry with the same "
            "Idempotency-Key to ask again (it will not refund twice)."
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    order_id: str
    amount: Money
    status: RefundStatus
    reason: RefundReason
    created_at: datetime
    updated_at: datetime
    actor_id: str | None = None
    """The admin who decided it; None for one learnt from the provider."""
    provider_refund_id: str | None = None
    idempotency_scope: str | None = None
    idempotency_key: str | None = None

    def settled(self, status: RefundStatus, provider_refund_id: str | None, now: datetime) -> Refund:
        return dataclasses.replace(
            self,
            status=status,
            provider_refund_id=provider_refund_id or self.provider_refund_id,
            updated_at=now,
        )


def left_to_refund(order: Order, refunds: Iterable[Refund]) -> Money:
    """The order's total less every refund that holds money (pending or succeeded)."""
    left = order.total
    for refund in refunds:
        if refund.status in HOLDS_MONEY:
            left = left - refund.amount  # raises CurrencyMismatch: a refund is in the order's currency
    return left


def refunded_so_far(order: Order, refunds: Iterable[Refund]) -> Money:
    total = Money(0, order.currency)
    for refund in refunds:
        if refund.status is RefundStatus.SUCCEEDED:
            total = total + refund.amount
    return total


def seller_shares_of_refund(order: Order, refunds: Iterable[Refund], refund: Refund) -> dict[str, Money]:
    """Each of the order's sellers' share of `refund`, in whole cents that add up to it: what the sellers'
    subtotals share of the money refunded so far once `refund` is counted, less what they shared of it before
    (the other succeeded refunds among `refunds`), both by `proportional_shares` as the seller dashboard shares
    an order's refunds. So a seller's shares of an order's refunds add up to the dashboard's figure, and never
    to more than their subtotal; a single seller's share is the whole refund. A seller is told their own share
    only: the refund's amount would reveal the other sellers' part of the order."""
    subtotals = {seller_id: order.seller_view(seller_id).total.cents for seller_id in order.seller_ids}
    whole = sum(subtotals.values())
    before = sum(r.amount.cents for r in refunds if r.status is RefundStatus.SUCCEEDED and r.id != refund.id)
    taken = proportional_shares(min(before, whole), subtotals)
    now = proportional_shares(min(before + refund.amount.cents, whole), subtotals)
    return {
        seller_id: Money(now[seller_id] - taken[seller_id], refund.amount.currency) for seller_id in subtotals
    }


def check_refund_amount(amount_cents: object) -> None:
    """Raise ValidationFailed unless `amount_cents` (None: what is left) is a positive integer in bounds."""
    if amount_cents is None:
        return
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise ValidationFailed([FieldError("amount_cents", "Must be an integer number of minor units.")])
    if not 1 <= amount_cents <= MAX_CENTS:
        raise ValidationFailed([FieldError("amount_cents", f"Must be between 1 and {MAX_CENTS}.")])


def decide_refund(
    order: Order,
    refunds: Iterable[Refund],
    amount_cents: int | None,
    *,
    refund_id: str,
    reason: RefundReason,
    now: datetime,
    actor_id: str | None = None,
    idempotency_scope: str | None = None,
    idempotency_key: str | None = None,
) -> Refund:
    """A pending refund of `amount_cents` (None: all that is left) of `order`, in its currency. Raises
    OrderNotRefundable (not paid, or nothing left) and RefundExceedsBalance (more than what is left)."""
    check_refund_amount(amount_cents)
    if order.status not in PAID_STATES:
        raise OrderNotRefundable(order.status)
    left = left_to_refund(order, refunds)
    if left.cents <= 0:
        raise OrderNotRefundable(OrderStatus.REFUNDED)
    amount = left if amount_cents is None else Money(amount_cents, order.currency)
    if amount.cents > left.cents:
        raise RefundExceedsBalance(amount, left)
    return Refund(
        id=refund_id,
        order_id=order.id,
        amount=amount,
        status=RefundStatus.PENDING,
        reason=reason,
        created_at=now,
        updated_at=now,
        actor_id=actor_id,
        idempotency_scope=idempotency_scope,
        idempotency_key=idempotency_key,
    )


def order_after_refunds(order: Order, refunds: Iterable[Refund], now: datetime) -> Order:
    """The order as its succeeded refunds leave it: unchanged with none, `partially_refunded` with some,
    `refunded` (its payment too) when they add up to its total."""
    refunded = refunded_so_far(order, refunds)
    if refunded.cents <= 0:
        return order
    full = refunded.cents >= order.total.cents
    target = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
    if target is order.status:
        return order
    changed = order.transition(target, now)
    if target is OrderStatus.REFUNDED and order.payment is not None:
        changed = dataclasses.replace(
            changed, payment=dataclasses.replace(order.payment, status=PaymentStatus.REFUNDED)
        )
    return changed
