"""Refunds started by the marketplace (an admin), and the provider's own refund events, applied once.

How a refund never takes more than what is left, however many run at once: it is decided with the order's
row locked (PostgreSQL `FOR UPDATE`; SQLite's write transaction holds the whole database) and stored as
`pending` in that transaction, so its amount is no longer left for the next one. The provider is asked
afterwards, outside any transaction (no lock is held while it thinks), with our refund id as its idempotency
key; its answer settles the refund in a second transaction (`succeeded`: the order becomes
`partially_refunded` or `refunded`; `declined`: the amount is left again).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable

from market.domain.admin import AuditAction, AuditTarget
from market.domain.errors import (
    DomainError,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    NotFound,
)
from market.domain.events import Event
from market.domain.orders import PaymentGatewayUnavailable
from market.domain.refunds import (
    Refund,
    RefundDeclined,
    RefundPending,
    RefundReason,
    RefundStatus,
    decide_refund,
)
from market.domain.users import User
from market.domain.validation import parse_id

from .admin import AdminPorts, append_audit
from .checkout import CheckoutAnswer
from .ports import (
    Clock,
    IdempotencyStore,
    IdempotentReplay,
    PaymentGateway,
    RefundRequest,
)
from .refund_settlement import complete_refund

_NO_SUCH_ORDER = "There is no such order."


def idempotency_scope(admin: User) -> str:
    """Where an admin's refund idempotency keys live: their own namespace (a UUID, as the key store wants), apart
    from any other use of the same key by the same account."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"market:refunds:{admin.id}"))


async def refund_order(
    admin: User,
    order_id: str,
    amount_cents: int | None,
    reason: RefundReason,
    *,
    idempotency_key: str | None = None,
    ports: AdminPorts,
    gateway: PaymentGateway,
) -> Refund:
    """Refund `amount_cents` (None: all that is left) of a paid order through the payment provider.

    Returns the refund: `succeeded`, or `pending` when the provider takes its time (its event settles it).
    Raises NotFound, OrderNotRefundable and RefundExceedsBalance (409s), RefundDeclined (the provider refused;
    nothing refunded), RefundPending (the provider did not answer: the refund stays pending, holding its
    amount, and a retry with the same idempotency key asks the provider again for the same refund).
    Each outcome appends one audit entry, in the transaction that records it."""
    scope = idempotency_scope(admin) if idempotency_key else None
    async with ports.uow() as work:
        order = await work.orders.get(order_id, for_update=True)
        if order is None:
            raise NotFound(_NO_SUCH_ORDER)
        refunds = list(await work.refunds.of_order(order.id))
        previous = next(
            (
                r
                for r in refunds
                if idempotency_key and (r.idempotency_scope, r.idempotency_key) == (scope, idempotency_key)
            ),
            None,
        )
        # A retry after an unknown outcome: the same refund, asked again if it is still pending (the
        # provider's event may have settled it meanwhile).
        if previous is not None and previous.status is RefundStatus.SUCCEEDED:
            return previous
        if previous is not None and previous.status is RefundStatus.FAILED:
            raise RefundDeclined("declined")
        if previous is not None:
            refund = previous
        else:
            refund = decide_refund(
                order,
                refunds,
                amount_cents,
                refund_id=ports.ids.new_id(),
                reason=reason,
                now=ports.clock.now(),
                actor_id=admin.id,
                idempotency_scope=scope,
                idempotency_key=idempotency_key,
            )
            await work.refunds.add(refund)
            await work.commit()
    assert order.payment is not None  # every paid order has its payment
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
        async with ports.uow() as work:
            await append_audit(work, ports, admin, *_audited(refund))
            await work.commit()
        raise RefundPending() from None

    async with ports.uow() as work:
        order = await work.orders.get(order_id, for_update=True)
        assert order is not None
        refunds = list(await work.refunds.of_order(order.id))
        current = next(r for r in refunds if r.id == refund.id)
        now = ports.clock.now()
        published: list[Event] = []
        if result.status == "succeeded":
            current, published = await complete_refund(
                work, order, refunds, current, result.provider_refund_id, now
            )
        elif result.status == "declined" and current.status is RefundStatus.PENDING:
            current = current.settled(RefundStatus.FAILED, result.provider_refund_id, now)
            await work.refunds.save(current)
        elif current.status is RefundStatus.PENDING and result.provider_refund_id:
            current = current.settled(RefundStatus.PENDING, result.provider_refund_id, now)
            await work.refunds.save(current)
        await append_audit(work, ports, admin, *_audited(current))
        await work.collect(published, now)
        await work.commit()
    if current.status is RefundStatus.FAILED:
        raise RefundDeclined(result.reason or "declined")
    return current


def _audited(refund: Refund) -> tuple[AuditAction, AuditTarget, str, dict[str, str | int | None]]:
    return (
        AuditAction.ORDER_REFUNDED,
        AuditTarget.ORDER,
        refund.order_id,
        {
            "refund_id": refund.id,
            "amount_cents": refund.amount.cents,
            "currency": refund.amount.currency,
            "reason": refund.reason.value,
            "status": refund.status.value,
        },
    )


async def idempotent_refund(
    admin: User,
    order_id: str,
    key: str | None,
    request_hash: str,
    amount_cents: int | None,
    reason: RefundReason,
    respond: Callable[[Refund | DomainError], IdempotentReplay],
    *,
    refund: RefundOrder,
    idempotency: IdempotencyStore,
    clock: Clock,
) -> CheckoutAnswer:
    """Refund once per idempotency key, the keys scoped per admin (see `idempotent_checkout`, same rules):
    no key → IdempotencyKeyRequired; same key and body → the first answer replayed; same key, another body
    (another order, amount or reason) → IdempotencyKeyReused; the first still running →
    IdempotentRequestInProgress. An unknown outcome (RefundPending) or an unexpected failure forgets the key:
    a retry with it resumes the same pending refund."""
    if not key:
        raise IdempotencyKeyRequired()
    scope = idempotency_scope(admin)
    scoped_hash = hashlib.sha256(f"{parse_id(order_id) or order_id}\n{request_hash}".encode()).hexdigest()
    claim = await idempotency.begin(scope, key, scoped_hash, clock.now())
    if isinstance(claim, IdempotentReplay):
        return CheckoutAnswer(claim.status, claim.body, replayed=True)
    if claim == "mismatch":
        raise IdempotencyKeyReused()
    if claim == "in_progress":
        raise IdempotentRequestInProgress()
    try:
        answer = respond(await refund(admin, order_id, amount_cents, reason, idempotency_key=key))
    except RefundPending:
        await idempotency.abandon(scope, key)
        raise
    except DomainError as exc:  # an outcome of this key (409, 404, declined), replayed like a success
        answer = respond(exc)
    except BaseException:
        await idempotency.abandon(scope, key)
        raise
    await idempotency.complete(scope, key, answer.status, answer.body, clock.now())
    return CheckoutAnswer(answer.status, answer.body, replayed=False)


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

RefundOrder = Callable[..., Awaitable[Refund]]
"""(admin, order id, amount in minor units or None, reason, *, idempotency_key=None)"""
IdempotentRefund = Callable[
    [
        User,
        str,
        str | None,
        str,
        int | None,
        RefundReason,
        Callable[[Refund | DomainError], IdempotentReplay],
    ],
    Awaitable[CheckoutAnswer],
]
"""(admin, order id, idempotency key, request hash, amount or None, reason, respond)"""
