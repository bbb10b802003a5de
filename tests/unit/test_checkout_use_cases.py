"""Cart, checkout, settlement, provider events and reconciliation with in-memory fakes."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import timedelta

import pytest

from market.application import ports
from market.application.checkout import (
    get_order,
    list_orders,
    reconcile_payments,
)
from market.application.ports import IdempotentReplay
from market.domain.catalog import ItemStatus
from market.domain.errors import CurrencyMismatch, NotFound, ValidationFailed
from market.domain.events import (
    CartChanged,
    CheckoutStarted,
    OrderPaid,
    OrderRefunded,
    PaymentAttempted,
    PaymentCapturedAfterFailure,
    RefundOfFailedPayment,
)
from market.domain.money import Money
from market.domain.orders import (
    MAX_CART_LINES,
    CheckoutInProgress,
    EmptyCart,
    InsufficientStock,
    ItemUnavailable,
    OrderStatus,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    PaymentStatus,
)
from market.domain.users import UserStatus
from tests.support import fakes
from tests.support.factories import item
from tests.support.fakes import (
    FakeClock,
    FakeStockRepository,
)
from tests.support.world import ADMIN, BUYER, OTHER_BUYER, OTHER_SELLER, SELLER, World


@pytest.fixture
def world() -> World:
    return World().stock_shelves()


# --- cart -------------------------------------------------------------------------------------------------


async def test_a_buyer_puts_items_in_the_cart_at_current_prices(world):
    await world.put("mug", 2)
    cart = await world.put("hat", 1)
    assert [(line.item_id, line.quantity, line.unit_price.cents) for line in cart.lines] == [
        ("mug", 2, 1999),
        ("hat", 1, 500),
    ]
    assert cart.total.cents == 2 * 1999 + 500
    assert await world.cart() == cart
    assert world.events.published == [CartChanged("mug", "add", 2), CartChanged("hat", "add", 1)]


async def test_lowering_and_removing_a_line_are_counted_as_removals(world):
    await world.put("mug", 3)
    await world.put("mug", 1)
    cart = await world.put("mug", 0)
    assert cart.lines == ()
    assert world.events.published[1:] == [CartChanged("mug", "remove", -2), CartChanged("mug", "remove", -1)]


async def test_more_than_the_stock_is_refused_and_the_cart_unchanged(world):
    await world.put("mug", 2)
    with pytest.raises(InsufficientStock):
        await world.put("mug", 6)
    assert (await world.cart()).quantity_of("mug") == 2


async def test_a_new_line_past_the_cap_is_refused_naming_the_cart_and_existing_lines_still_change(world):
    for n in range(MAX_CART_LINES + 1):
        world.store.items[f"i{n}"] = item(id=f"i{n}", title=f"Item {n}", price_cents=100, stock=5)
    for n in range(MAX_CART_LINES):
        await world.put(f"i{n}", 1)
    full = await world.cart()

    with pytest.raises(ValidationFailed) as refused:
        await world.put(f"i{MAX_CART_LINES}", 1)
    assert [e.field for e in refused.value.errors] == ["cart"]
    assert await world.cart() == full

    assert (await world.put("i0", 3)).quantity_of("i0") == 3  # a line's quantity still changes at the cap
    await world.put("i1", 0)
    assert len((await world.put(f"i{MAX_CART_LINES}", 1)).lines) == MAX_CART_LINES  # room again


async def test_an_item_in_another_currency_is_refused(world):
    await world.put("mug", 1)
    with pytest.raises(CurrencyMismatch):
        await world.put("dollar", 1)
    assert [line.item_id for line in (await world.cart()).lines] == ["mug"]


async def test_an_archived_item_can_be_removed_but_not_added(world):
    await world.put("mug", 1)
    world.store.items["mug"] = dataclasses.replace(world.store.items["mug"], status=ItemStatus.ARCHIVED)
    with pytest.raises(NotFound):
        await world.put("mug", 2)
    assert (await world.put("mug", 0)).lines == ()


def disable(world, seller):
    world.store.users[seller.id] = dataclasses.replace(seller, status=UserStatus.DISABLED)


async def test_a_line_whose_item_left_the_catalog_shows_as_unavailable_and_is_not_in_the_total(world):
    await world.put("mug", 1)
    await world.put("hat", 2)
    world.store.items["mug"] = dataclasses.replace(world.store.items["mug"], status=ItemStatus.ARCHIVED)
    cart = await world.cart()
    assert [(line.item_id, line.available) for line in cart.lines] == [("mug", False), ("hat", True)]
    assert cart.total == Money(1000, "EUR"), "only what can be bought"
    disable(world, OTHER_SELLER)  # the hat's seller
    cart = await world.cart()
    assert [line.available for line in cart.lines] == [False, False]
    assert cart.total is None


async def test_checkout_of_a_cart_with_an_unavailable_line_names_the_item_and_changes_nothing(world):
    await world.put("mug", 1)
    await world.put("hat", 1)
    world.store.items["hat"] = dataclasses.replace(world.store.items["hat"], status=ItemStatus.ARCHIVED)
    with pytest.raises(ItemUnavailable) as raised:
        await world.checkout()
    assert "'Hat' is no longer available" in raised.value.detail
    assert world.state.orders == {} and world.state.claims == {} and world.gateway.requests == []
    assert world.stock("mug") == 5
    await world.put("hat", 0)
    assert (await world.checkout()).status is OrderStatus.PAID, "removing the line is all it takes"


async def test_a_disabled_sellers_item_cannot_be_added_nor_checked_out_until_they_are_enabled(world):
    await world.put("hat", 1)
    disable(world, OTHER_SELLER)
    with pytest.raises(NotFound):
        await world.put("hat", 2)
    with pytest.raises(ItemUnavailable):
        await world.checkout()
    assert world.stock("hat") == 3
    world.store.users[OTHER_SELLER.id] = OTHER_SELLER  # enabled again
    assert (await world.checkout()).status is OrderStatus.PAID


async def test_an_unknown_item_is_not_found(world):
    with pytest.raises(NotFound):
        await world.put("nope", 1)


# --- checkout: the charge's own answer --------------------------------------------------------------------


async def test_a_successful_checkout_pays_the_order_takes_the_stock_and_empties_the_cart(world):
    world.state.webhook_sellers.add(SELLER.id)
    await world.put("mug", 2)
    await world.put("hat", 1)
    order = await world.checkout("tok_visa")
    assert order.status is OrderStatus.PAID
    assert order == world.order(order.id)
    assert order.total == Money(2 * 1999 + 500, "EUR")
    assert order.payment.status is PaymentStatus.SUCCEEDED
    assert order.payment.provider == "fake" and order.payment.provider_payment_id == "fake_ch_1"
    assert order.payment.amount == order.total
    assert (world.stock("mug"), world.stock("hat")) == (3, 2)
    assert (await world.cart()).lines == ()
    assert world.state.claims == {}
    assert world.state.webhook_deliveries == [(SELLER.id, order.id)]  # seller-2 has no endpoint
    assert [r.amount for r in world.gateway.requests] == [order.total]
    assert world.published(CheckoutStarted) == [CheckoutStarted(order.id, order.total, 2)]
    assert [e.outcome for e in world.published(PaymentAttempted)] == ["succeeded"]
    assert world.published(OrderPaid) == [OrderPaid(order.id, order.total)]


@pytest.mark.parametrize(
    ("token", "reason"),
    [("tok_chargeDeclined", "card_declined"), ("tok_insufficientFunds", "insufficient_funds")],
)
async def test_a_decline_releases_the_stock_keeps_the_order_failed_and_the_cart(world, token, reason):
    await world.put("mug", 2)
    with pytest.raises(PaymentDeclined) as raised:
        await world.checkout(token)
    order = world.only_order()
    assert raised.value.order_id == order.id and raised.value.reason == reason
    assert order.status is OrderStatus.PAYMENT_FAILED
    assert order.payment.status is PaymentStatus.DECLINED and order.payment.failure_reason == reason
    assert world.stock("mug") == 5
    assert (await world.cart()).quantity_of("mug") == 2
    assert world.state.claims == {}
    assert world.published(OrderPaid) == [] and world.state.webhook_deliveries == []
    assert [(e.outcome, e.reason) for e in world.published(PaymentAttempted)] == [("declined", reason)]


async def test_after_a_decline_the_buyer_retries_with_another_card(world):
    await world.put("mug", 2)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    paid = await world.checkout("tok_visa")
    assert paid.status is OrderStatus.PAID
    assert world.stock("mug") == 3
    assert sorted(o.status for o in world.state.orders.values()) == [
        OrderStatus.PAID,
        OrderStatus.PAYMENT_FAILED,
    ]


async def test_an_unavailable_gateway_leaves_the_order_pending_and_releases_the_cart_claim(world):
    await world.put("mug", 2)
    world.gateway.down = True
    with pytest.raises(PaymentGatewayUnavailable) as raised:
        await world.checkout("tok_visa")
    order = world.only_order()
    assert raised.value.order_id == order.id
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.payment.status is PaymentStatus.PENDING
    assert world.stock("mug") == 3, "stock stays reserved while the outcome is unknown"
    assert (await world.cart()).quantity_of("mug") == 2
    assert world.state.claims == {}
    assert [(e.outcome, e.reason) for e in world.published(PaymentAttempted)] == [
        ("error", "gateway_unavailable")
    ]


async def test_an_asynchronous_payment_is_processing_with_the_stock_reserved(world):
    await world.put("mug", 2)
    order = await world.checkout("tok_processing")
    assert order.status is OrderStatus.PROCESSING
    assert order.payment.status is PaymentStatus.PROCESSING
    assert world.stock("mug") == 3
    assert (await world.cart()).lines == ()
    assert world.state.claims == {}
    assert world.published(PaymentAttempted) == [] and world.published(OrderPaid) == []


async def test_an_empty_cart_cannot_be_checked_out_and_leaves_no_claim(world):
    with pytest.raises(EmptyCart):
        await world.checkout()
    assert world.state.orders == {} and world.state.claims == {}
    assert world.gateway.requests == []


async def test_stock_gone_since_carting_refuses_the_checkout_and_charges_nothing(world):
    await world.put("mug", 4)
    world.store.items["mug"] = dataclasses.replace(world.store.items["mug"], stock=3)
    with pytest.raises(InsufficientStock):
        await world.checkout()
    assert world.state.orders == {} and world.state.claims == {}
    assert world.gateway.requests == [] and world.stock("mug") == 3
    assert (await world.cart()).quantity_of("mug") == 4


async def test_a_failed_reservation_rolls_back_the_ones_before_it(world, monkeypatch):
    await world.put("mug", 2)
    await world.put("hat", 1)
    reserve = FakeStockRepository.reserve

    async def archived_just_before(self, item_id, quantity):
        if item_id == "hat":  # archived between the cart's read and its reservation
            self.items[item_id] = dataclasses.replace(self.items[item_id], status=ItemStatus.ARCHIVED)
        return await reserve(self, item_id, quantity)

    monkeypatch.setattr(FakeStockRepository, "reserve", archived_just_before)
    with pytest.raises(ItemUnavailable) as raised:
        await world.checkout()
    assert raised.value.detail == "'Hat' is no longer available; remove it from your cart to check out."
    assert world.stock("mug") == 5, "the mug's reservation is rolled back with the rest"
    assert world.state.orders == {} and world.state.claims == {}
    assert world.gateway.requests == []


async def test_a_buyer_who_loses_the_race_for_the_last_units_is_told_what_is_left_now(world, monkeypatch):
    await world.put("mug", 2)
    reserve = FakeStockRepository.reserve

    async def sold_just_before(self, item_id, quantity):
        self.items[item_id] = dataclasses.replace(self.items[item_id], stock=1)  # another checkout won
        return await reserve(self, item_id, quantity)

    monkeypatch.setattr(FakeStockRepository, "reserve", sold_just_before)
    with pytest.raises(InsufficientStock) as raised:
        await world.checkout()
    assert raised.value.available == 1
    assert raised.value.detail == "Only 1 of 'Blue mug' left."


async def test_stock_is_reserved_and_released_in_item_id_order_whatever_the_carts_order(world, monkeypatch):
    # One global lock order: two checkouts of the same items in opposite cart orders cannot deadlock.
    touched = []
    reserve, release = FakeStockRepository.reserve, FakeStockRepository.release

    async def recording_reserve(self, item_id, quantity):
        touched.append(("reserve", item_id))
        return await reserve(self, item_id, quantity)

    async def recording_release(self, item_id, quantity):
        touched.append(("release", item_id))
        await release(self, item_id, quantity)

    monkeypatch.setattr(FakeStockRepository, "reserve", recording_reserve)
    monkeypatch.setattr(FakeStockRepository, "release", recording_release)
    await world.put("mug", 1)
    await world.put("hat", 1)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    assert touched == [("reserve", "hat"), ("reserve", "mug"), ("release", "hat"), ("release", "mug")]


async def test_a_cart_held_by_a_running_checkout_cannot_be_checked_out_again(world):
    await world.put("mug", 1)
    world.state.claims[BUYER.id] = ("someone-else", world.clock.now())
    with pytest.raises(CheckoutInProgress):
        await world.checkout()
    assert world.state.orders == {} and world.stock("mug") == 5


async def test_a_claim_left_by_a_crashed_checkout_expires(world):
    await world.put("mug", 1)
    world.state.claims[BUYER.id] = ("crashed", world.clock.now() - timedelta(minutes=16))
    assert (await world.checkout()).status is OrderStatus.PAID


# --- provider events --------------------------------------------------------------------------------------


async def test_the_providers_success_event_pays_a_processing_order(world):
    world.state.webhook_sellers.add(SELLER.id)
    await world.put("mug", 2)
    order = await world.checkout("tok_processing")
    outcome = await world.event("evt_1", "payment.succeeded", order.id, provider_payment_id="fake_ch_1")
    assert outcome == "applied"
    settled = world.order(order.id)
    assert settled.status is OrderStatus.PAID and settled.payment.status is PaymentStatus.SUCCEEDED
    assert world.stock("mug") == 3
    assert world.published(OrderPaid) == [OrderPaid(order.id, order.total)]
    assert [e.outcome for e in world.published(PaymentAttempted)] == ["succeeded"]
    assert world.state.webhook_deliveries == [(SELLER.id, order.id)]
    assert world.state.payment_events == {"evt_1": ("payment.succeeded", order.id, "applied")}


async def test_a_failure_event_for_a_processing_order_releases_its_stock(world):
    await world.put("mug", 2)
    order = await world.checkout("tok_processing")
    assert await world.event("evt_1", "payment.failed", order.id, reason="card_declined") == "applied"
    failed = world.order(order.id)
    assert failed.status is OrderStatus.PAYMENT_FAILED and failed.payment.failure_reason == "card_declined"
    assert world.stock("mug") == 5


async def test_a_duplicate_event_is_applied_once(world):
    world.state.webhook_sellers.add(SELLER.id)
    await world.put("mug", 2)
    order = await world.checkout("tok_processing")
    assert await world.event("evt_1", "payment.succeeded", order.id) == "applied"
    paid = world.order(order.id)
    assert await world.event("evt_1", "payment.succeeded", order.id) == "duplicate"
    assert world.order(order.id) == paid
    assert len(world.published(OrderPaid)) == 1
    assert world.state.webhook_deliveries == [(SELLER.id, order.id)]
    assert list(world.state.payment_events) == ["evt_1"]


async def test_a_redelivery_whose_id_is_already_recorded_changes_nothing(world):
    # However two deliveries interleave, the one that finds the id recorded must leave no trace.
    await world.put("mug", 2)
    order = await world.checkout("tok_processing")
    world.state.payment_events["evt_1"] = ("payment.succeeded", order.id, "applied")
    assert await world.event("evt_1", "payment.succeeded", order.id) == "duplicate"
    assert world.order(order.id).status is OrderStatus.PROCESSING
    assert world.published(OrderPaid) == []


async def test_a_duplicate_refund_event_refunds_once(world):
    await world.put("mug", 1)
    order = await world.checkout("tok_visa")
    assert await world.event("evt_r", "payment.refunded", order.id) == "applied"
    assert await world.event("evt_r", "payment.refunded", order.id) == "duplicate"
    assert len(world.published(OrderRefunded)) == 1


async def test_a_failure_event_after_payment_changes_nothing_and_is_recorded_as_ignored(world):
    await world.put("mug", 2)
    order = await world.checkout("tok_visa")
    before, events_before = world.order(order.id), list(world.events.published)
    assert await world.event("evt_late", "payment.failed", order.id, reason="card_declined") == "ignored"
    assert world.order(order.id) == before
    assert world.order(order.id).updated_at == before.updated_at
    assert world.stock("mug") == 3, "a late decline must not hand the stock back"
    assert world.events.published == events_before
    assert world.state.payment_events["evt_late"] == ("payment.failed", order.id, "ignored")


async def test_a_success_event_for_a_failed_order_is_ignored_but_published_as_money_captured(world):
    await world.put("mug", 2)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    order = world.only_order()
    assert await world.event("evt_late", "payment.succeeded", order.id) == "ignored"
    failed = world.order(order.id)
    assert failed.status is OrderStatus.PAYMENT_FAILED, (
        "the released stock may be sold: it cannot become paid"
    )
    assert world.stock("mug") == 5
    assert world.published(OrderPaid) == []
    assert world.published(PaymentCapturedAfterFailure) == [
        PaymentCapturedAfterFailure(order.id, failed.payment.id, "evt_late", order.total)
    ]
    assert world.state.payment_events["evt_late"] == ("payment.succeeded", order.id, "ignored")
    assert await world.event("evt_late", "payment.succeeded", order.id) == "duplicate"
    assert len(world.published(PaymentCapturedAfterFailure)) == 1, "a redelivery is not a second capture"


async def test_a_second_success_event_is_ignored(world):
    await world.put("mug", 1)
    order = await world.checkout("tok_visa")
    assert await world.event("evt_again", "payment.succeeded", order.id) == "ignored"
    assert len(world.published(OrderPaid)) == 1


async def test_a_paid_order_is_refunded(world):
    await world.put("mug", 2)
    order = await world.checkout("tok_visa")
    assert await world.event("evt_r", "payment.refunded", order.id) == "applied"
    refunded = world.order(order.id)
    assert refunded.status is OrderStatus.REFUNDED
    assert refunded.payment.status is PaymentStatus.REFUNDED
    [refund] = world.refunds(order.id)  # made at the provider: recorded as a refund of all that was left
    assert (refund.amount, refund.reason.value, refund.actor_id) == (order.total, "provider", None)
    assert world.published(OrderRefunded) == [OrderRefunded(order.id, order.total, "provider", refund.id)]
    assert world.state.payment_events["evt_r"] == ("payment.refunded", order.id, "applied")


async def test_a_failed_order_cannot_be_refunded(world):
    await world.put("mug", 1)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    order = world.only_order()
    assert await world.event("evt_r", "payment.refunded", order.id) == "ignored"
    assert world.order(order.id).status is OrderStatus.PAYMENT_FAILED
    assert world.published(OrderRefunded) == []
    # but never silently: the provider moved money for an order we consider failed
    assert world.published(RefundOfFailedPayment) == [
        RefundOfFailedPayment(order.id, order.payment.id, "evt_r")
    ]
    assert world.state.payment_events["evt_r"] == ("payment.refunded", order.id, "ignored")
    assert await world.event("evt_r", "payment.refunded", order.id) == "duplicate"
    assert len(world.published(RefundOfFailedPayment)) == 1, "a redelivery is not a second refund"


async def test_an_event_for_an_unknown_order_is_recorded_and_changes_nothing(world):
    assert await world.event("evt_x", "payment.succeeded", "no-such-order") == "unknown_order"
    assert world.state.payment_events == {"evt_x": ("payment.succeeded", None, "unknown_order")}
    assert world.state.orders == {}


# --- reconciliation ---------------------------------------------------------------------------------------


async def test_reconcile_pays_an_order_the_provider_charged_while_timing_out(world):
    await world.put("mug", 2)
    with pytest.raises(PaymentGatewayUnavailable):
        await world.checkout("tok_gatewayTimeout")
    order = world.only_order()
    assert order.status is OrderStatus.PENDING_PAYMENT
    counts = await world.reconcile()
    assert counts == {"paid": 1, "payment_failed": 0, "unchanged": 0}
    paid = world.order(order.id)
    assert paid.status is OrderStatus.PAID and paid.payment.status is PaymentStatus.SUCCEEDED
    assert paid.payment.provider_payment_id == "fake_ch_1"
    assert world.stock("mug") == 3
    assert (await world.cart()).lines == ()
    assert world.published(OrderPaid) == [OrderPaid(order.id, order.total)]
    assert len(world.gateway.requests) == 1, "reconciliation looks up; it never charges again"


async def test_reconcile_fails_an_order_the_provider_never_received_and_releases_its_stock(world):
    await world.put("mug", 2)
    world.gateway.down = True
    with pytest.raises(PaymentGatewayUnavailable):
        await world.checkout()
    world.gateway.down = False
    counts = await world.reconcile()
    assert counts == {"paid": 0, "payment_failed": 1, "unchanged": 0}
    failed = world.only_order()
    assert failed.status is OrderStatus.PAYMENT_FAILED
    assert failed.payment.failure_reason == "not_received_by_provider"
    assert world.stock("mug") == 5
    assert (await world.cart()).quantity_of("mug") == 2


async def test_reconcile_settles_a_processing_order_from_the_providers_record(world):
    await world.put("mug", 1)
    order = await world.checkout("tok_processing")
    assert await world.reconcile() == {"paid": 1, "payment_failed": 0, "unchanged": 0}
    assert world.order(order.id).status is OrderStatus.PAID


async def test_reconcile_leaves_orders_alone_while_the_provider_is_down(world):
    await world.put("mug", 1)
    with pytest.raises(PaymentGatewayUnavailable):
        await world.checkout("tok_gatewayTimeout")
    world.gateway.down = True
    assert await world.reconcile() == {"paid": 0, "payment_failed": 0, "unchanged": 1}
    assert world.only_order().status is OrderStatus.PENDING_PAYMENT
    assert world.stock("mug") == 4


async def test_reconcile_waits_for_the_grace_period_so_a_charge_in_flight_is_not_failed(world):
    await world.put("mug", 1)
    world.gateway.down = True
    with pytest.raises(PaymentGatewayUnavailable):
        await world.checkout()
    counts = await reconcile_payments(uow=world.store.uow, gateway=world.gateway, clock=world.clock)
    assert counts == {"paid": 0, "payment_failed": 0, "unchanged": 0}
    assert world.only_order().status is OrderStatus.PENDING_PAYMENT


async def test_reconcile_ignores_settled_orders(world):
    await world.put("mug", 1)
    await world.checkout("tok_visa")
    assert await world.reconcile() == {"paid": 0, "payment_failed": 0, "unchanged": 0}
    assert world.gateway.requests and len(world.gateway.requests) == 1


# --- reading orders ---------------------------------------------------------------------------------------


async def _orders_by_two_buyers(world):
    await world.put("mug", 1)
    mine = await world.checkout()
    await world.put("hat", 1, buyer=OTHER_BUYER)
    theirs = await world.checkout(buyer=OTHER_BUYER)
    return mine, theirs


async def test_an_order_is_visible_to_its_buyer_its_sellers_and_admins_only(world):
    mine, theirs = await _orders_by_two_buyers(world)
    assert await get_order(mine.id, BUYER, uow=world.store.uow) == mine
    assert await get_order(mine.id, SELLER, uow=world.store.uow) == mine
    assert await get_order(mine.id, ADMIN, uow=world.store.uow) == mine
    for outsider in (OTHER_BUYER, OTHER_SELLER):
        with pytest.raises(NotFound):
            await get_order(mine.id, outsider, uow=world.store.uow)
    assert await get_order(theirs.id, OTHER_SELLER, uow=world.store.uow) == theirs
    with pytest.raises(NotFound):
        await get_order("no-such-order", ADMIN, uow=world.store.uow)


async def test_order_lists_follow_the_same_visibility(world):
    mine, theirs = await _orders_by_two_buyers(world)

    async def ids(who):
        page = await list_orders(who, 20, None, uow=world.store.uow)
        return [o.id for o in page.items]

    assert await ids(BUYER) == [mine.id]
    assert await ids(OTHER_BUYER) == [theirs.id]
    assert await ids(SELLER) == [mine.id]
    assert await ids(OTHER_SELLER) == [theirs.id]
    assert await ids(ADMIN) == [theirs.id, mine.id]


async def _order_from_two_sellers(world):
    await world.put("mug", 2)  # SELLER's, 1999 each
    await world.put("hat", 1)  # OTHER_SELLER's, 500
    return await world.checkout()


async def test_a_seller_sees_only_their_own_lines_and_subtotal_of_an_order(world):
    whole = await _order_from_two_sellers(world)
    assert whole.total == Money(2 * 1999 + 500, "EUR")
    for seller, item_id, subtotal in ((SELLER, "mug", 2 * 1999), (OTHER_SELLER, "hat", 500)):
        for seen in (
            await get_order(whole.id, seller, uow=world.store.uow),
            (await list_orders(seller, 20, None, uow=world.store.uow)).items[0],
        ):
            assert [line.item_id for line in seen.lines] == [item_id]
            assert seen.total == Money(subtotal, "EUR")
            assert seen.payment is not None and seen.payment.amount == Money(subtotal, "EUR")
            assert (seen.id, seen.status, seen.currency) == (whole.id, whole.status, whole.currency)


async def test_the_buyer_and_admins_see_the_whole_order(world):
    whole = await _order_from_two_sellers(world)
    for who in (BUYER, ADMIN):
        assert await get_order(whole.id, who, uow=world.store.uow) == whole
        assert (await list_orders(who, 20, None, uow=world.store.uow)).items == [whole]


# --- the fakes are whole ports ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fake", "port"),
    [
        (fakes.FakeCartRepository, ports.CartRepository),
        (fakes.FakeStockRepository, ports.StockRepository),
        (fakes.FakeOrderRepository, ports.OrderRepository),
        (fakes.FakePaymentEventLog, ports.PaymentEventLog),
        (fakes.FakeWebhookOutbox, ports.WebhookOutbox),
        (fakes.FakeIdempotencyStore, ports.IdempotencyStore),
        (fakes.FakePaymentGateway, ports.PaymentGateway),
    ],
)
def test_each_commerce_fake_implements_its_whole_port(fake, port):
    for name, member in vars(port).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        assert hasattr(fake, name), f"{fake.__name__} lacks {name}"
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(
            inspect.signature(member).parameters
        ), f"{fake.__name__}.{name} does not match {port.__name__}.{name}"
        assert inspect.iscoroutinefunction(getattr(fake, name)) == inspect.iscoroutinefunction(member)
    assert all(hasattr(fake, attr) for attr in getattr(port, "__annotations__", {}))


async def test_the_fake_idempotency_store_keeps_the_real_ones_rules():
    keys, t0 = fakes.FakeIdempotencyStore(), FakeClock().now()
    assert await keys.begin("ada", "k", "h1", t0) == "new"
    assert await keys.begin("ada", "k", "h1", t0) == "in_progress"
    assert await keys.begin("ada", "k", "h2", t0) == "mismatch"
    assert await keys.begin("bob", "k", "h2", t0) == "new"
    assert await keys.begin("ada", "k", "h1", t0 + timedelta(minutes=6)) == "new"  # taken over
    await keys.complete("ada", "k", 201, b"{}", t0)
    await keys.abandon("ada", "k")
    assert await keys.begin("ada", "k", "h1", t0) == IdempotentReplay(201, b"{}")
    assert await keys.purge(t0 + timedelta(seconds=1)) == 2
