"""Checkout and everything that settles a payment afterwards: the charge's own answer, the provider's
webhook events, and reconciliation of orders whose outcome was unknown."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market.domain.errors import (
    DomainError,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    NotFound,
)
from market.domain.events import (
    CheckoutStarted,
    Event,
    OrderPaid,
    PaymentAttempted,
    PaymentCapturedAfterFailure,
    RefundOfFailedPayment,
)
from market.domain.orders import (
    GATEWAY_UNAVAILABLE,
    NOT_RECEIVED_BY_PROVIDER,
    RESERVING,
    CheckoutInProgress,
    InsufficientStock,
    ItemUnavailable,
    Order,
    OrderFilter,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    PaymentStatus,
    place_order,
)
from market.domain.users import User

from .ports import (
    ChargeRequest,
    ChargeResult,
    Clock,
    IdempotencyStore,
    IdempotentReplay,
    IdGenerator,
    Page,
    PaymentGateway,
    ProviderEvent,
    UnitOfWork,
    UnitOfWorkFactory,
)
from .refund_settlement import apply_refund_event

SUCCEEDED, DECLINED, PROCESSING = "succeeded", "declined", "processing"


@dataclass(frozen=True, slots=True)
class PaymentMethodInput:
    type: str
    token: str = field(repr=False)


async def checkout(
    buyer: User,
    method: PaymentMethodInput,
    *,
    uow: UnitOfWorkFactory,
    gateway: PaymentGateway,
    ids: IdGenerator,
    clock: Clock,
    traceparent: str | None = None,
) -> Order:
    """Turn the cart into an order, reserve its stock and charge for it.

    Returns the order (`paid`, or `processing` for asynchronous payments). Raises EmptyCart,
    ItemUnavailable (a line no longer on sale), InsufficientStock, CheckoutInProgress; PaymentDeclined (order
    kept as payment_failed, stock released); PaymentGatewayUnavailable (order kept as pending_payment, settled
    later by reconciliation).
    The charge happens outside any database transaction: no lock is held while the provider thinks.
    `traceparent` is where the checkout runs; later provider events about the payment link back to it.
    """
    order_id = ids.new_id()
    now = clock.now()
    async with uow() as work:
        cart = await work.carts.claim_for_checkout(buyer.id, order_id, now)
        if cart is None:
            raise CheckoutInProgress()
        order = place_order(order_id=order_id, cart=cart, now=now, traceparent=traceparent)
        payment = Payment(
            id=ids.new_id(),
            order_id=order.id,
            status=PaymentStatus.PENDING,
            method=method.type,
            amount=order.total,
            provider=gateway.name,
        )
        order = dataclasses.replace(order, payment=payment)
        await work.orders.add(order)
        await work.collect([CheckoutStarted(order.id, order.total, len(order.lines))], now)
        # The stock last: a popular item's row stays locked from its reservation to the commit, and every
        # other checkout of it waits that long. Item rows are locked in one global order (by id), whatever the
        # cart's order: two checkouts taking the same items in opposite orders would otherwise deadlock.
        lines = _in_lock_order(order.lines)
        short = await work.stock.reserve_all([(line.item_id, line.quantity) for line in lines])
        if short is not None:
            line = next(line for line in lines if line.item_id == short)
            # Tell what is left now: the cart's figure predates the checkouts that won the race (and the
            # item may have left the catalog since the cart was read). Either raise rolls back every
            # reservation, the order and the claim.
            item = await work.items.get_on_sale(line.item_id)
            if item is None:
                raise ItemUnavailable(line.title)
            raise InsufficientStock(line.title, item.stock)
        await work.commit()

    request = ChargeRequest(order.id, payment.id, order.total, method.type, method.token)
    try:
        result = await gateway.charge(request)
    except PaymentGatewayUnavailable:
        async with uow() as work:  # the buyer may retry or wait; reconciliation settles this order
            await work.carts.release_checkout(buyer.id, order.id)
            # Marks the outcome as unknown (rather than in flight), so reconciliation may settle it at once.
            unknown = dataclasses.replace(payment, failure_reason=GATEWAY_UNAVAILABLE)
            await work.orders.save_status(dataclasses.replace(order, payment=unknown))
            await work.collect([_attempt(order, "error", GATEWAY_UNAVAILABLE)], clock.now())
            await work.commit()
        raise PaymentGatewayUnavailable(order.id) from None

    # An asynchronous attempt is counted when it ends (see _settle).
    attempt = _attempt(order, result.status, result.reason) if result.status != PROCESSING else None
    settled = await settle_payment(order.id, result, uow=uow, clock=clock, attempt=attempt, placed=order)
    if settled.status is OrderStatus.PAYMENT_FAILED:
        raise PaymentDeclined(order.id, result.reason or "declined")
    return settled


PlaceOrder = Callable[[User, PaymentMethodInput], Awaitable[Order]]
"""`checkout` with its ports bound (bootstrap wraps it in the `checkout.place_order` business span, which also
supplies the `traceparent`)."""


@dataclass(frozen=True, slots=True)
class CheckoutAnswer:
    """The answer a checkout request gets: `status` and `body` as `respond` shaped them, and whether they are a
    replay of the first answer under the same idempotency key."""

    status: int
    body: bytes
    replayed: bool


async def idempotent_checkout(
    buyer: User,
    key: str | None,
    request_hash: str,
    method: PaymentMethodInput,
    respond: Callable[[Order | DomainError], IdempotentReplay],
    *,
    place_order: PlaceOrder,
    idempotency: IdempotencyStore,
    clock: Clock,
) -> CheckoutAnswer:
    """Checkout once per idempotency key: the first request with `key` places the order and stores its answer
    (an order, or a domain error such as a decline, both shaped by `respond`); a retry with the same key and
    body replays that answer. Raises IdempotencyKeyRequired (no key), IdempotencyKeyReused (same key, another
    body: `request_hash` differs), IdempotentRequestInProgress (the first is still running).

    A CheckoutInProgress (another request holds the cart) or an unexpected failure is not this key's outcome:
    the key is forgotten, so the client may retry with it."""
    if not key:
        raise IdempotencyKeyRequired()
    claim = await idempotency.begin(buyer.id, key, request_hash, clock.now())
    if isinstance(claim, IdempotentReplay):
        return CheckoutAnswer(claim.status, claim.body, replayed=True)
    if claim == "mismatch":
        raise IdempotencyKeyReused()
    if claim == "in_progress":
        raise IdempotentRequestInProgress()
    try:
        answer = respond(await place_order(buyer, method))
    except CheckoutInProgress:  # transient, and about another request: not this key's outcome
        await idempotency.abandon(buyer.id, key)
        raise
    except DomainError as exc:  # an outcome of this key, replayed like a success
        answer = respond(exc)
    except BaseException:
        await idempotency.abandon(buyer.id, key)
        raise
    await idempotency.complete(buyer.id, key, answer.status, answer.body, clock.now())
    return CheckoutAnswer(answer.status, answer.body, replayed=False)


async def settle_payment(
    order_id: str,
    result: ChargeResult,
    *,
    uow: UnitOfWorkFactory,
    clock: Clock,
    attempt: PaymentAttempted | None = None,
    placed: Order | None = None,
) -> Order:
    """Apply the provider's answer about an order's charge (see `_settle`). `attempt` is the charge call
    this answer came from: it is recorded in the same transaction, whatever the order's state admits.
    `placed`: the order as its checkout placed it (then only its current state is read back, under the same
    lock: a webhook or reconciliation may have settled it meanwhile)."""
    async with uow() as work:
        if placed is not None:
            order = await work.orders.lock_current(placed)
        else:
            order = await work.orders.get(order_id, for_update=True)
        if order is None or order.payment is None:
            raise NotFound("There is no such order.")
        now = clock.now()
        settled, published = await _settle(work, order, result, now)
        if attempt is not None:
            published.insert(0, attempt)
        await work.collect(published, now)
        await work.commit()
    return settled


async def _settle(
    work: UnitOfWork, order: Order, result: ChargeResult, now: datetime
) -> tuple[Order, list[Event]]:
    """Idempotent and order-tolerant: an answer the order's state no longer admits (a `declined` after
    `paid`, a second `succeeded`) changes nothing."""
    assert order.payment is not None
    target = {SUCCEEDED: OrderStatus.PAID, DECLINED: OrderStatus.PAYMENT_FAILED}.get(
        result.status, OrderStatus.PROCESSING
    )
    if not order.can_become(target):
        return order, []
    payment = dataclasses.replace(
        order.payment,
        status=_PAYMENT_STATUS_FOR[target],
        provider_payment_id=result.provider_payment_id or order.payment.provider_payment_id,
        failure_reason=result.reason if target is OrderStatus.PAYMENT_FAILED else None,
    )
    settled = dataclasses.replace(order.transition(target, now), payment=payment)
    await work.orders.save_status(settled)
    published: list[Event] = []
    if order.status is OrderStatus.PROCESSING and target is not OrderStatus.PROCESSING:
        published.append(_attempt(order, result.status, result.reason))  # the asynchronous attempt ends
    if target in (OrderStatus.PAID, OrderStatus.PROCESSING) and order.status is OrderStatus.PENDING_PAYMENT:
        # The order is placed: its lines leave the cart (an asynchronous payment that fails later releases
        # the stock; the buyer re-adds what they still want).
        await work.carts.remove_ordered_items(
            order.buyer_id, order.id, [line.item_id for line in order.lines]
        )
    if target is OrderStatus.PAID:
        await work.outbox.enqueue_order_paid(settled, now)
        published.append(OrderPaid(order.id, order.total))
    elif target is OrderStatus.PAYMENT_FAILED:
        for line in _in_lock_order(order.lines):
            await work.stock.release(line.item_id, line.quantity)
        await work.carts.release_checkout(order.buyer_id, order.id)
    return settled, published


def _in_lock_order(lines: tuple[OrderLine, ...]) -> list[OrderLine]:
    return sorted(lines, key=lambda line: line.item_id)


_PAYMENT_STATUS_FOR = {
    OrderStatus.PAID: PaymentStatus.SUCCEEDED,
    OrderStatus.PAYMENT_FAILED: PaymentStatus.DECLINED,
    OrderStatus.PROCESSING: PaymentStatus.PROCESSING,
}


async def apply_provider_event(
    event: ProviderEvent, *, uow: UnitOfWorkFactory, clock: Clock, ids: IdGenerator
) -> str:
    """Apply a provider event once. The event id is recorded in the same transaction as the change, so a
    redelivery is recognised however it races. Returns `applied`, `ignored` (the order's state does not
    admit it, e.g. `payment.failed` after `paid`), `duplicate`, `unknown_order` or `mismatched` (the event's
    amount or currency is not the order's payment's: nothing changes). A `payment.succeeded` for an order
    already `payment_failed` is `ignored` too, but publishes PaymentCapturedAfterFailure: the money was taken;
    a `payment.refunded` for such an order is `ignored` and publishes RefundOfFailedPayment."""
    now = clock.now()
    published: list[Event] = []
    async with uow() as work:
        order = await work.orders.get(event.order_id, for_update=True)
        if order is None or order.payment is None:
            outcome = "unknown_order"
        elif _contradicts(event, order.payment):
            # Authentic, yet not about this order's payment: applying it would mark an order paid for
            # another amount, or refund it in another currency. Recorded (a redelivery is a duplicate) and
            # left for a person: the provider's account and ours disagree.
            outcome = "mismatched"
        elif event.type == "payment.refunded":
            settled_first = order.status in RESERVING
            if settled_first:
                # Providers do not promise to deliver events in order: a refund may come before the payment's
                # own success (or before reconciliation learns of it). Only a taken charge can be refunded, so
                # the payment succeeded: settle it first, or the refund would be ignored for good (its event id
                # recorded) while the money went back to the buyer.
                charged = ChargeResult(SUCCEEDED, event.provider_payment_id, None)
                order, published = await _settle(work, order, charged, now)
            # Partial or full, ours or made at the provider: never more than what is left, and a refund
            # already applied (by the admin's own request or an earlier event) changes nothing.
            outcome, refunded = await apply_refund_event(work, order, event, now, ids)
            outcome = "applied" if settled_first else outcome
            published += refunded
            if order.status is OrderStatus.PAYMENT_FAILED:
                # `ignored` (nothing of ours to take back), but money moved at the provider: never silently.
                published.append(RefundOfFailedPayment(order.id, order.payment.id, event.id))
        else:
            status = SUCCEEDED if event.type == "payment.succeeded" else DECLINED
            settled, published = await _settle(
                work, order, ChargeResult(status, event.provider_payment_id, event.reason), now
            )
            outcome = "applied" if settled is not order else "ignored"
            if status == SUCCEEDED and order.status is OrderStatus.PAYMENT_FAILED:
                # Money taken for an order we consider failed: still `ignored` (a failed order cannot become
                # paid: its stock is released), but never silently: counted and logged for a person to settle.
                published.append(
                    PaymentCapturedAfterFailure(order.id, order.payment.id, event.id, order.payment.amount)
                )
        order_ref = order.id if order is not None else None
        if not await work.payment_events.record(event.id, event.type, order_ref, outcome, now):
            return "duplicate"  # leaving without commit rolls back whatever this delivery did
        await work.collect(published, now)
        await work.commit()
    return outcome


def _contradicts(event: ProviderEvent, payment: Payment) -> bool:
    """Whether the event says another currency than the payment's, or (about the payment itself, not a
    refund) another amount. What it does not say is not held against it."""
    if event.currency is not None and event.currency != payment.amount.currency:
        return True
    return (
        event.type != "payment.refunded"
        and event.amount_cents is not None
        and event.amount_cents != payment.amount.cents
    )


async def reconcile_payments(
    *,
    uow: UnitOfWorkFactory,
    gateway: PaymentGateway,
    clock: Clock,
    grace: timedelta = timedelta(seconds=10),
    limit: int = 100,
) -> dict[str, int]:
    """Settle orders left pending_payment or processing from the provider's own records: a charge the
    provider never received failed; one it holds settles as it says. Orders whose charge call failed are
    settled at once; others only after `grace`, so that a charge still in flight is never judged early.
    Returns counts by outcome."""
    counts = {"paid": 0, "payment_failed": 0, "unchanged": 0}
    async with uow() as work:
        unsettled = list(await work.orders.unsettled(clock.now() - grace, limit))
    for order in unsettled:
        assert order.payment is not None
        try:
            record = await gateway.lookup(order.id, order.payment.id)
        except PaymentGatewayUnavailable:
            counts["unchanged"] += 1
            continue
        if record is None:
            record = ChargeResult(DECLINED, reason=NOT_RECEIVED_BY_PROVIDER)
        settled = await settle_payment(order.id, record, uow=uow, clock=clock)
        outcome = settled.status.value
        counts[outcome if outcome in counts else "unchanged"] += 1
    return counts


def _attempt(order: Order, outcome: str, reason: str | None) -> PaymentAttempted:
    assert order.payment is not None
    return PaymentAttempted(
        order_id=order.id,
        outcome=outcome,
        method=order.payment.method,
        amount=order.total,
        reason=reason,
    )


def order_visible_to(order: Order, user: User) -> bool:
    if user.role.value == "admin":
        return True
    if user.role.value == "seller":
        return user.id in order.seller_ids
    return order.buyer_id == user.id


async def get_order(order_id: str, user: User, *, uow: UnitOfWorkFactory) -> Order:
    """One order, if the user may see it; otherwise (as when it does not exist) NotFound."""
    async with uow() as work:
        order = await work.orders.get(order_id)
    if order is None or not order_visible_to(order, user):
        raise NotFound("There is no such order.")
    return order.as_seen_by(user)


async def list_orders(
    user: User,
    limit: int,
    cursor: str | None,
    *,
    uow: UnitOfWorkFactory,
    order_filter: OrderFilter | None = None,
) -> Page[Order]:
    """The orders `user` may see that match `order_filter`, newest first, each as they may see it (a seller:
    their lines only)."""
    async with uow() as work:
        page = await work.orders.list_visible_to(user, limit, cursor, order_filter)
    return dataclasses.replace(page, items=[order.as_seen_by(user) for order in page.items])


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

IdempotentCheckout = Callable[
    [User, str | None, str, PaymentMethodInput, Callable[[Order | DomainError], IdempotentReplay]],
    Awaitable[CheckoutAnswer],
]
"""(buyer, idempotency key, request hash, payment method, respond)"""
ApplyProviderEvent = Callable[[ProviderEvent], Awaitable[str]]
ListOrders = Callable[..., Awaitable[Page[Order]]]
"""(user, limit, cursor, *, order_filter=None)"""
GetOrder = Callable[[str, User], Awaitable[Order]]
"""(order id, user)"""
