"""Settling refunds: marking one succeeded (the order follows, the sellers hear of it), and the provider's
`payment.refunded` events, applied once whichever way they race the admin's own request. Used by the refund
use case (refunds.py) and by provider-event intake (checkout.py)."""

from __future__ import annotations

from datetime import datetime

from market.domain.events import Event, OrderRefunded
from market.domain.orders import PAID_STATES, Order
from market.domain.refunds import (
    Refund,
    RefundReason,
    RefundStatus,
    decide_refund,
    left_to_refund,
    order_after_refunds,
)

from .ports import IdGenerator, ProviderEvent, UnitOfWork


async def complete_refund(
    work: UnitOfWork,
    order: Order,
    refunds: list[Refund],
    refund: Refund,
    provider_refund_id: str | None,
    now: datetime,
) -> tuple[Refund, list[Event]]:
    """Mark `refund` succeeded, move the order along, queue the sellers' `order.refunded` webhooks; returns the
    refund and the events to collect. Once only: a refund already succeeded changes nothing."""
    if refund.status is not RefundStatus.PENDING:
        return refund, []
    done = refund.settled(RefundStatus.SUCCEEDED, provider_refund_id, now)
    await work.refunds.save(done)
    after = [done if r.id == done.id else r for r in refunds]
    changed = order_after_refunds(order, after, now)
    if changed is not order:
        await work.orders.save_status(changed)
    await work.outbox.enqueue_order_refunded(changed, done, now)
    return done, [OrderRefunded(order.id, done.amount, done.reason.value, done.id)]


async def apply_refund_event(
    work: UnitOfWork, order: Order, event: ProviderEvent, now: datetime, ids: IdGenerator
) -> tuple[str, list[Event]]:
    """A `payment.refunded` event from the provider, inside `work` with the order locked. One about a refund of
    ours (named by our id or the provider's) settles it if it is still pending, and otherwise changes nothing;
    one about a refund made at the provider itself (its dashboard) is recorded as a refund of its amount (the
    whole payment: what is left), never more than what is left. Returns (`applied` | `ignored`, events)."""
    if order.status not in PAID_STATES:
        return "ignored", []
    refunds = list(await work.refunds.of_order(order.id))
    ours = next(
        (
            r
            for r in refunds
            if (event.refund_id is not None and r.id == event.refund_id)
            or (event.provider_refund_id is not None and r.provider_refund_id == event.provider_refund_id)
        ),
        None,
    )
    if ours is not None:
        if ours.status is not RefundStatus.PENDING:
            return "ignored", []  # applied already (by the admin's request, or an earlier event)
        _, published = await complete_refund(work, order, refunds, ours, event.provider_refund_id, now)
        return "applied", published
    left = left_to_refund(order, refunds)
    if left.cents <= 0:
        return "ignored", []
    amount = left.cents if event.amount_cents is None else min(event.amount_cents, left.cents)
    if amount <= 0:
        return "ignored", []
    external = decide_refund(
        order, refunds, amount, refund_id=ids.new_id(), reason=RefundReason.PROVIDER, now=now
    )
    await work.refunds.add(external)
    _, published = await complete_refund(
        work, order, [*refunds, external], external, event.provider_refund_id, now
    )
    return "applied", published
