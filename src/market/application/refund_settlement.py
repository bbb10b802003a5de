"""Settling refunds: marking one succeeded (the order follows, the sellers hear of it), and the provider's
`payment.refunded` events, applied once whichever way they race the admin's own request. Used by the refund
use case (refunds.py) and by provider-event intake (checkout.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from market.domain.events import Event, OrderRefunded
from market.domain.orders import PAID_STATES, Order, PaymentGatewayUnavailable
from market.domain.refunds import (
    Refund,
    RefundReason,
    RefundStatus,
    decide_refund,
    left_to_refund,
    order_after_refunds,
    seller_shares_of_refund,
)

from .ports import (
    Clock,
    IdGenerator,
    PaymentGateway,
    ProviderEvent,
    RefundRequest,
    UnitOfWork,
    UnitOfWorkFactory,
)

PROVIDER_IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long a provider is trusted to recognise a refund it is asked about again by its idempotency key (Stripe keeps
keys 24 hours). A refund pending longer is left alone: asking again could refund twice; an admin looks at it."""


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
    shares = seller_shares_of_refund(order, refunds, done)
    await work.outbox.enqueue_order_refunded(changed, done, shares, now)
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


async def settle_pending_refunds(
    *,
    uow: UnitOfWorkFactory,
    gateway: PaymentGateway,
    clock: Clock,
    grace: timedelta = timedelta(minutes=1),
    limit: int = 100,
) -> dict[str, int]:
    """The background sweep of refunds left pending: ask the provider again about each (our refund id is its
    idempotency key, so asking again never refunds twice) and apply its answer as the admin's request would
    have. Only refunds last changed more than `grace` ago (not one still in flight) and younger than the
    provider's idempotency window. Returns counts: `succeeded`, `failed`, `pending` (no answer yet), and `stuck`:
    the refunds still pending past that window, which the sweep no longer asks about and an admin must look into
    (`market.refunds.stuck`, the MarketRefundsStuck alert)."""
    counts = {"succeeded": 0, "failed": 0, "pending": 0, "stuck": 0}
    now = clock.now()
    async with uow() as work:
        waiting = list(await work.refunds.pending(now - PROVIDER_IDEMPOTENCY_WINDOW, now - grace, limit))
        counts["stuck"] = await work.refunds.count_pending(now - PROVIDER_IDEMPOTENCY_WINDOW)
        orders = {r.order_id: await work.orders.get(r.order_id) for r in waiting}
    for refund in waiting:
        order = orders[refund.order_id]
        if order is None or order.payment is None:
            continue
        request = RefundRequest(
            refund_id=refund.id,
            order_id=order.id,
            payment_id=order.payment.id,
            provider_payment_id=order.payment.provider_payment_id,
            amount=refund.amount,
            reason=refund.reason.value,
        )
        try:
            result = await gateway.refund(request)
        except PaymentGatewayUnavailable:
            counts["pending"] += 1
            continue
        async with uow() as work:
            locked = await work.orders.get(order.id, for_update=True)
            assert locked is not None
            refunds = list(await work.refunds.of_order(order.id))
            current = next(r for r in refunds if r.id == refund.id)
            at = clock.now()
            published: list[Event] = []
            if result.status == "succeeded":
                current, published = await complete_refund(
                    work, locked, refunds, current, result.provider_refund_id, at
                )
            elif result.status == "declined" and current.status is RefundStatus.PENDING:
                current = current.settled(RefundStatus.FAILED, result.provider_refund_id, at)
                await work.refunds.save(current)
            elif current.status is RefundStatus.PENDING:
                # Still pending at the provider: stamp it, so the next sweep asks after `grace` again.
                current = current.settled(RefundStatus.PENDING, result.provider_refund_id, at)
                await work.refunds.save(current)
            await work.collect(published, at)
            await work.commit()
        counts[current.status.value] += 1
    return counts
