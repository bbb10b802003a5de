"""Refunds with in-memory fakes: the money rule (never more than what is left), the order's states, the
gateway's answers, provider events about the same refund applied once, and the idempotency key's rules."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from functools import partial

import pytest

from market.application.ports import IdempotentReplay
from market.application.refund_settlement import settle_pending_refunds
from market.application.refunds import idempotency_scope, idempotent_refund
from market.domain.admin import AuditAction, AuditTarget
from market.domain.analytics import proportional_shares
from market.domain.errors import (
    DomainError,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    NotFound,
    ValidationFailed,
)
from market.domain.events import OrderRefunded
from market.domain.money import Money
from market.domain.orders import OrderStatus, PaymentDeclined, PaymentStatus
from market.domain.refunds import (
    OrderNotRefundable,
    Refund,
    RefundDeclined,
    RefundExceedsBalance,
    RefundPending,
    RefundReason,
    RefundStatus,
    decide_refund,
    left_to_refund,
)
from tests.support.fakes import FakeIdempotencyStore
from tests.support.world import ADMIN, OTHER_SELLER, SELLER, World

MUG = 1999


@pytest.fixture
def world() -> World:
    return World().stock_shelves()


async def paid_order(world: World, quantity: int = 2):
    await world.put("mug", quantity)
    return await world.checkout("tok_visa")


# --- the domain rule ---------------------------------------------------------------------------------------


async def test_an_omitted_amount_is_what_is_left_and_more_than_that_is_refused(world):
    order = await paid_order(world)
    first = decide_refund(order, [], 500, refund_id="r1", reason=RefundReason.DUPLICATE, now=order.created_at)
    assert first.amount == Money(500, "EUR") and first.status is RefundStatus.PENDING
    rest = decide_refund(
        order, [first], None, refund_id="r2", reason=RefundReason.OTHER, now=order.created_at
    )
    assert rest.amount == Money(2 * MUG - 500, "EUR")
    with pytest.raises(RefundExceedsBalance) as refused:
        decide_refund(
            order, [first], 2 * MUG - 499, refund_id="r3", reason=RefundReason.OTHER, now=order.created_at
        )
    assert refused.value.left == Money(2 * MUG - 500, "EUR")


async def test_a_failed_refund_leaves_its_amount_again(world):
    order = await paid_order(world)
    failed = dataclasses.replace(
        decide_refund(order, [], 700, refund_id="r1", reason=RefundReason.OTHER, now=order.created_at),
        status=RefundStatus.FAILED,
    )
    assert left_to_refund(order, [failed]) == order.total


@pytest.mark.parametrize("amount", [0, -1, 10**13, True, 1.5])
async def test_an_amount_that_is_not_a_positive_integer_in_bounds_is_invalid(world, amount):
    order = await paid_order(world)
    with pytest.raises(ValidationFailed):
        decide_refund(order, [], amount, refund_id="r1", reason=RefundReason.OTHER, now=order.created_at)


async def test_each_seller_is_told_only_their_own_share_of_a_refund_of_a_shared_order(world):
    """mug (SELLER, 1999) and hat (OTHER_SELLER, 500): each seller's `order.refunded` carries their part of
    the refund, never its whole amount, and a seller's parts never add up to more than their subtotal."""
    await world.put("mug", 1)
    await world.put("hat", 1)
    order = await world.checkout("tok_visa")
    world.state.webhook_sellers.update({SELLER.id, OTHER_SELLER.id})

    first = await world.refund(order.id, 1000, RefundReason.DAMAGED)
    rest = await world.refund(order.id)

    assert world.state.refund_deliveries == [
        (SELLER.id, order.id, first.id, 800),  # 1000 * 1999 / 2499 = 799.9
        (OTHER_SELLER.id, order.id, first.id, 200),
        (SELLER.id, order.id, rest.id, 1999 - 800),
        (OTHER_SELLER.id, order.id, rest.id, 500 - 200),
    ]


async def test_a_sellers_shares_of_several_refunds_add_up_to_the_dashboards_share_of_their_sum(world):
    """The seller dashboard shares an order's refunded money among its sellers in one go
    (`proportional_shares` of the sum); the `order.refunded` webhooks share each refund as it happens. A seller
    adding up their webhooks must find the dashboard's figure after every refund (it was a cent off: 1 then 2
    cents gave the mug's seller 3 and the hat's 0 by webhook, 2 and 1 on the dashboard)."""
    await world.put("mug", 1)
    await world.put("hat", 1)
    order = await world.checkout("tok_visa")
    world.state.webhook_sellers.update({SELLER.id, OTHER_SELLER.id})
    subtotals = {SELLER.id: MUG, OTHER_SELLER.id: 500}

    refunded = 0
    for amount in (1, 2, 7, 1000, None):
        refund = await world.refund(order.id, amount)
        refunded += refund.amount.cents
        told = {seller: 0 for seller in subtotals}
        for seller, _, _, cents in world.state.refund_deliveries:
            told[seller] += cents
        assert told == proportional_shares(refunded, subtotals), refunded
    assert told == subtotals


# --- the use case ------------------------------------------------------------------------------------------


async def test_a_partial_then_the_rest_moves_the_order_to_partially_refunded_then_refunded(world):
    order = await paid_order(world)
    world.state.webhook_sellers.add(SELLER.id)

    first = await world.refund(order.id, 500, RefundReason.DAMAGED)
    assert (first.status, first.amount, first.actor_id) == (
        RefundStatus.SUCCEEDED,
        Money(500, "EUR"),
        ADMIN.id,
    )
    assert world.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED
    assert world.order(order.id).payment.status is PaymentStatus.SUCCEEDED

    rest = await world.refund(order.id)
    assert rest.amount == Money(2 * MUG - 500, "EUR")
    assert world.order(order.id).status is OrderStatus.REFUNDED
    assert world.order(order.id).payment.status is PaymentStatus.REFUNDED

    assert world.published(OrderRefunded) == [
        OrderRefunded(order.id, Money(500, "EUR"), "damaged", first.id),
        OrderRefunded(order.id, Money(2 * MUG - 500, "EUR"), "requested_by_customer", rest.id),
    ]
    assert world.state.refund_deliveries == [
        (SELLER.id, order.id, first.id, 500),
        (SELLER.id, order.id, rest.id, 2 * MUG - 500),
    ]
    assert [r.provider_refund_id for r in world.refunds(order.id)] == ["fake_re_1", "fake_re_2"]
    entries = [(e.action, e.target_type, e.target_id, e.details["amount_cents"]) for e in world.audit]
    assert entries == [
        (AuditAction.ORDER_REFUNDED, AuditTarget.ORDER, order.id, 500),
        (AuditAction.ORDER_REFUNDED, AuditTarget.ORDER, order.id, 2 * MUG - 500),
    ]
    assert world.audit[0].actor_id == ADMIN.id and world.audit[0].details["status"] == "succeeded"


async def test_a_fully_refunded_order_cannot_be_refunded_again(world):
    order = await paid_order(world)
    await world.refund(order.id)
    with pytest.raises(OrderNotRefundable):
        await world.refund(order.id, 1)
    assert len(world.gateway.refund_requests) == 1


async def test_more_than_what_is_left_is_refused_and_nothing_moves(world):
    order = await paid_order(world)
    await world.refund(order.id, 1000)
    with pytest.raises(RefundExceedsBalance):
        await world.refund(order.id, 2 * MUG - 999)
    assert len(world.refunds(order.id)) == 1
    assert len(world.gateway.refund_requests) == 1
    assert world.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED


async def test_an_order_that_is_not_paid_cannot_be_refunded(world):
    await world.put("mug", 1)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    order = world.only_order()
    with pytest.raises(OrderNotRefundable):
        await world.refund(order.id)
    assert world.refunds(order.id) == [] and world.gateway.refund_requests == []


async def test_an_unknown_order_is_not_found(world):
    with pytest.raises(NotFound):
        await world.refund("no-such-order")


async def test_a_declined_refund_is_failed_and_leaves_the_amount_to_refund(world):
    order = await paid_order(world)
    world.gateway.refund_answer = "declined"
    with pytest.raises(RefundDeclined):
        await world.refund(order.id, 500)
    [failed] = world.refunds(order.id)
    assert failed.status is RefundStatus.FAILED
    assert world.order(order.id).status is OrderStatus.PAID
    assert world.published(OrderRefunded) == []
    assert world.audit[-1].details["status"] == "failed"
    world.gateway.refund_answer = "succeeded"
    assert (await world.refund(order.id)).amount == order.total


async def test_a_silent_provider_leaves_the_refund_pending_and_a_retry_with_the_key_resumes_it(world):
    order = await paid_order(world)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await world.refund(order.id, 500, key="k-1")
    [pending] = world.refunds(order.id)
    assert pending.status is RefundStatus.PENDING
    with pytest.raises(RefundExceedsBalance):  # the pending refund holds its amount
        await world.refund(order.id, 2 * MUG - 499)

    world.gateway.down = False
    resumed = await world.refund(order.id, 500, key="k-1")
    assert resumed.id == pending.id and resumed.status is RefundStatus.SUCCEEDED
    assert len(world.refunds(order.id)) == 1
    assert len(world.gateway.refunds) == 1
    assert [r.refund_id for r in world.gateway.refund_requests] == [pending.id, pending.id]


async def test_a_pending_answer_is_settled_by_the_providers_event_once(world):
    order = await paid_order(world)
    world.gateway.refund_answer = "pending"
    refund = await world.refund(order.id, 500)
    assert refund.status is RefundStatus.PENDING
    assert world.order(order.id).status is OrderStatus.PAID

    extra = {"refund_id": refund.id, "provider_refund_id": refund.provider_refund_id, "amount_cents": 500}
    assert await world.event("evt_1", "payment.refunded", order.id, **extra) == "applied"
    assert world.refunds(order.id)[0].status is RefundStatus.SUCCEEDED
    assert world.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED
    # Another event about the same refund (another id: Stripe sends several) changes nothing.
    assert await world.event("evt_2", "payment.refunded", order.id, **extra) == "ignored"
    assert await world.event("evt_1", "payment.refunded", order.id, **extra) == "duplicate"
    assert len(world.published(OrderRefunded)) == 1
    assert len(world.refunds(order.id)) == 1


async def test_the_providers_event_about_a_refund_already_applied_is_ignored(world):
    order = await paid_order(world)
    refund = await world.refund(order.id, 500)
    by_ours = {"refund_id": refund.id, "amount_cents": 500}
    by_theirs = {"provider_refund_id": refund.provider_refund_id, "amount_cents": 500}
    assert await world.event("evt_1", "payment.refunded", order.id, **by_ours) == "ignored"
    assert await world.event("evt_2", "payment.refunded", order.id, **by_theirs) == "ignored"
    assert len(world.refunds(order.id)) == 1
    assert len(world.published(OrderRefunded)) == 1
    assert world.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED


async def test_a_full_refund_event_after_a_partial_refund_takes_only_the_rest(world):
    order = await paid_order(world)
    await world.refund(order.id, 500)
    assert await world.event("evt_full", "payment.refunded", order.id) == "applied"
    amounts = sorted(r.amount.cents for r in world.refunds(order.id))
    assert amounts == [500, 2 * MUG - 500]
    assert world.order(order.id).status is OrderStatus.REFUNDED
    assert await world.event("evt_again", "payment.refunded", order.id) == "ignored"
    assert len(world.refunds(order.id)) == 2


async def test_a_refund_made_at_the_provider_never_exceeds_what_is_left(world):
    order = await paid_order(world)
    await world.refund(order.id, 2 * MUG - 100)
    extra = {"provider_refund_id": "re_dashboard", "amount_cents": 5000}
    assert await world.event("evt_x", "payment.refunded", order.id, **extra) == "applied"
    external = [r for r in world.refunds(order.id) if r.reason is RefundReason.PROVIDER]
    assert [r.amount.cents for r in external] == [100]
    assert world.order(order.id).status is OrderStatus.REFUNDED


# --- the idempotency key -----------------------------------------------------------------------------------


def respond(outcome: Refund | DomainError) -> IdempotentReplay:
    if isinstance(outcome, Refund):
        return IdempotentReplay(201, f"{outcome.id}:{outcome.amount.cents}".encode())
    return IdempotentReplay(409, type(outcome).__name__.encode())


def refunding(world: World, store: FakeIdempotencyStore):
    async def refund_order(admin, order_id, amount_cents, reason, *, idempotency_key=None):
        return await world.refund(order_id, amount_cents, reason, admin=admin, key=idempotency_key)

    return partial(idempotent_refund, refund=refund_order, idempotency=store, clock=world.clock)


async def test_a_key_is_required(world):
    order = await paid_order(world)
    run = refunding(world, FakeIdempotencyStore())
    with pytest.raises(IdempotencyKeyRequired):
        await run(ADMIN, order.id, None, "h", 500, RefundReason.OTHER, respond)


async def test_the_same_key_and_body_replay_the_first_answer_and_refund_once(world):
    order = await paid_order(world)
    run = refunding(world, FakeIdempotencyStore())
    first = await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    again = await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    assert (first.status, first.replayed, again.replayed) == (201, False, True)
    assert again.body == first.body
    assert len(world.refunds(order.id)) == 1


async def test_a_refusal_is_the_keys_outcome_and_is_replayed(world):
    order = await paid_order(world)
    run = refunding(world, FakeIdempotencyStore())
    first = await run(ADMIN, order.id, "k", "h", 10**6, RefundReason.OTHER, respond)
    assert (first.status, first.body) == (409, b"RefundExceedsBalance")
    assert (await run(ADMIN, order.id, "k", "h", 10**6, RefundReason.OTHER, respond)).replayed


async def test_the_same_key_with_another_body_or_order_is_refused(world):
    order = await paid_order(world)
    run = refunding(world, FakeIdempotencyStore())
    await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    with pytest.raises(IdempotencyKeyReused):
        await run(ADMIN, order.id, "k", "other body", 600, RefundReason.OTHER, respond)
    with pytest.raises(IdempotencyKeyReused):
        await run(ADMIN, "another-order", "k", "h", 500, RefundReason.OTHER, respond)


async def test_a_key_still_in_flight_is_a_conflict(world):
    order = await paid_order(world)
    store = FakeIdempotencyStore()
    scoped_hash = hashlib.sha256(f"{order.id}\nh".encode()).hexdigest()
    await store.begin(idempotency_scope(ADMIN), "k", scoped_hash, world.clock.now())
    run = refunding(world, store)
    with pytest.raises(IdempotentRequestInProgress):
        await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)


async def test_keys_are_scoped_per_admin(world):
    other_admin = dataclasses.replace(ADMIN, id="admin-2")
    world.store.users[other_admin.id] = other_admin
    order = await paid_order(world)
    run = refunding(world, FakeIdempotencyStore())
    await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    theirs = await run(other_admin, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    assert not theirs.replayed
    assert len(world.refunds(order.id)) == 2


async def test_an_unknown_outcome_forgets_the_key_so_a_retry_resumes_the_same_refund(world):
    order = await paid_order(world)
    store = FakeIdempotencyStore()
    run = refunding(world, store)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    world.gateway.down = False
    answer = await run(ADMIN, order.id, "k", "h", 500, RefundReason.OTHER, respond)
    assert answer.status == 201 and not answer.replayed
    assert len(world.refunds(order.id)) == 1 and len(world.gateway.refunds) == 1


# --- the background sweep of pending refunds ---------------------------------------------------------------


async def sweep(world: World, minutes: int = 2):
    world.clock.advance(timedelta(minutes=minutes))
    return await settle_pending_refunds(uow=world.store.uow, gateway=world.gateway, clock=world.clock)


async def test_the_sweep_settles_a_refund_the_provider_did_not_answer_about_once(world):
    order = await paid_order(world)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await world.refund(order.id, 500)
    assert await sweep(world) == {"succeeded": 0, "failed": 0, "pending": 1, "stuck": 0}
    world.gateway.down = False
    assert await sweep(world) == {"succeeded": 1, "failed": 0, "pending": 0, "stuck": 0}
    [refund] = world.refunds(order.id)
    assert refund.status is RefundStatus.SUCCEEDED
    assert world.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED
    assert len(world.published(OrderRefunded)) == 1
    assert await sweep(world) == {"succeeded": 0, "failed": 0, "pending": 0, "stuck": 0}
    assert len(world.gateway.refunds) == 1


async def test_the_sweep_leaves_a_refund_in_flight_and_one_too_old_to_ask_about_again(world):
    order = await paid_order(world)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await world.refund(order.id, 500)
    world.gateway.down = False
    world.clock.advance(timedelta(seconds=10))
    assert await settle_pending_refunds(uow=world.store.uow, gateway=world.gateway, clock=world.clock) == {
        "succeeded": 0,
        "failed": 0,
        "pending": 0,
        "stuck": 0,
    }
    # Past the provider's idempotency window the sweep no longer asks, and says how many it left for an admin.
    assert await sweep(world, minutes=25 * 60) == {"succeeded": 0, "failed": 0, "pending": 0, "stuck": 1}
    assert world.refunds(order.id)[0].status is RefundStatus.PENDING
    assert not world.gateway.refunds  # asked once, while it was down; never again


async def test_the_sweep_fails_a_refund_the_provider_refuses(world):
    order = await paid_order(world)
    world.gateway.down = True
    with pytest.raises(RefundPending):
        await world.refund(order.id, 500)
    world.gateway.down, world.gateway.refund_answer = False, "declined"
    assert await sweep(world) == {"succeeded": 0, "failed": 1, "pending": 0, "stuck": 0}
    assert world.refunds(order.id)[0].status is RefundStatus.FAILED
    assert left_to_refund(world.order(order.id), world.refunds(order.id)) == order.total
