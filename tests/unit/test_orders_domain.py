"""The order state machine, the cart's currency and stock rules, and placing an order."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

import pytest

from market.domain.errors import CurrencyMismatch, ValidationFailed
from market.domain.money import MAX_CENTS, Money
from market.domain.orders import (
    MAX_LINE_QUANTITY,
    Cart,
    CartLine,
    EmptyCart,
    IllegalTransition,
    InsufficientStock,
    Order,
    OrderLine,
    OrderStatus,
    check_cart_quantity,
    place_order,
)
from market.domain.users import Role
from tests.support.factories import T0, user

S = OrderStatus
# Written out on purpose rather than read from ALLOWED_TRANSITIONS: the test states the contract.
LEGAL = {
    (S.PENDING_PAYMENT, S.PAID),
    (S.PENDING_PAYMENT, S.PAYMENT_FAILED),
    (S.PENDING_PAYMENT, S.PROCESSING),
    (S.PROCESSING, S.PAID),
    (S.PROCESSING, S.PAYMENT_FAILED),
    (S.PAID, S.REFUNDED),
    (S.PAID, S.PARTIALLY_REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}
ILLEGAL = sorted(set(itertools.product(S, S)) - LEGAL)


def line(item_id="item-1", *, quantity=1, price=1000, currency="EUR", stock=5, seller="seller-1", title=None):
    return CartLine(item_id, title or f"Item {item_id}", quantity, Money(price, currency), seller, stock)


def order(status: OrderStatus = S.PENDING_PAYMENT) -> Order:
    return Order(
        id="order-1",
        buyer_id="buyer-1",
        status=status,
        lines=(OrderLine("item-1", "seller-1", "Blue mug", 2, Money(1000, "EUR")),),
        total=Money(2000, "EUR"),
        created_at=T0,
        updated_at=T0,
    )


# --- the state machine ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "target"), sorted(LEGAL))
def test_a_legal_transition_moves_the_order_and_stamps_the_time(start, target):
    before = order(start)
    later = T0 + timedelta(minutes=3)
    after = before.transition(target, later)
    assert after.status is target
    assert after.updated_at == later
    assert after.created_at == T0
    assert (after.id, after.lines, after.total) == (before.id, before.lines, before.total)
    assert before.status is start, "orders are immutable: the original is unchanged"
    assert before.can_become(target)


@pytest.mark.parametrize(("start", "target"), ILLEGAL)
def test_an_illegal_transition_raises_and_changes_nothing(start, target):
    before = order(start)
    assert not before.can_become(target)
    with pytest.raises(IllegalTransition) as raised:
        before.transition(target, T0 + timedelta(minutes=3))
    assert start.value in raised.value.detail and target.value in raised.value.detail
    assert before.status is start and before.updated_at == T0


def test_the_illegal_list_covers_the_cases_that_matter():
    assert (S.PAID, S.PAYMENT_FAILED) in ILLEGAL  # a late decline cannot undo a payment
    assert (S.PAYMENT_FAILED, S.PAID) in ILLEGAL
    assert (S.PROCESSING, S.PENDING_PAYMENT) in ILLEGAL
    assert (S.PENDING_PAYMENT, S.REFUNDED) in ILLEGAL
    assert (S.REFUNDED, S.PAID) in ILLEGAL
    assert (S.PAID, S.PAID) in ILLEGAL  # a second success is not a transition


def test_failed_and_refunded_are_final():
    for final in (S.PAYMENT_FAILED, S.REFUNDED):
        assert not any(order(final).can_become(target) for target in S)


# --- cart rules -------------------------------------------------------------------------------------------


def test_an_empty_cart_has_no_currency_and_no_total():
    cart = Cart("buyer-1")
    assert cart.currency is None and cart.total is None
    assert cart.quantity_of("item-1") == 0


def test_the_cart_total_sums_every_line_in_minor_units():
    cart = Cart("buyer-1", (line("a", quantity=2, price=1999), line("b", quantity=3, price=1)))
    assert cart.total == Money(2 * 1999 + 3, "EUR")
    assert cart.currency == "EUR"
    assert cart.quantity_of("a") == 2 and cart.quantity_of("b") == 3


def test_an_item_in_another_currency_cannot_join_the_cart():
    cart = Cart("buyer-1", (line("a", currency="EUR"),))
    with pytest.raises(CurrencyMismatch) as raised:
        check_cart_quantity(cart, item_id="b", title="Hat", currency="USD", stock=5, quantity=1)
    assert "EUR" in raised.value.detail and "USD" in raised.value.detail


def test_a_cart_already_in_two_currencies_says_so_instead_of_naming_one_currency_twice():
    # A seller repriced an item in the cart in another currency: changing the other line was answered
    # "Your cart is in EUR; 'Mug' is priced in EUR."
    cart = Cart("buyer-1", (line("a", currency="EUR", title="Mug"), line("b", currency="USD")))
    with pytest.raises(CurrencyMismatch) as raised:
        check_cart_quantity(cart, item_id="a", title="Mug", currency="EUR", stock=5, quantity=2)
    assert "no longer priced in one currency" in raised.value.detail


def test_an_item_in_the_carts_currency_may_join_it():
    cart = Cart("buyer-1", (line("a", currency="EUR"),))
    check_cart_quantity(cart, item_id="b", title="Hat", currency="EUR", stock=5, quantity=5)


def test_the_only_line_may_change_quantity_whatever_its_currency():
    # The currency rule compares with the *other* lines: the item's own line is being replaced.
    cart = Cart("buyer-1", (line("a", currency="EUR"),))
    check_cart_quantity(cart, item_id="a", title="Item a", currency="USD", stock=5, quantity=2)


def test_an_empty_cart_accepts_any_currency():
    check_cart_quantity(Cart("buyer-1"), item_id="a", title="Hat", currency="JPY", stock=1, quantity=1)


def test_more_than_the_stock_is_refused_with_what_is_left():
    with pytest.raises(InsufficientStock) as raised:
        check_cart_quantity(
            Cart("buyer-1"), item_id="a", title="Blue mug", currency="EUR", stock=2, quantity=3
        )
    assert raised.value.available == 2
    assert raised.value.detail == "Only 2 of 'Blue mug' left."


def test_an_out_of_stock_item_says_so():
    with pytest.raises(InsufficientStock) as raised:
        check_cart_quantity(
            Cart("buyer-1"), item_id="a", title="Blue mug", currency="EUR", stock=0, quantity=1
        )
    assert raised.value.available == 0
    assert "out of stock" in raised.value.detail


def test_exactly_the_stock_is_allowed():
    check_cart_quantity(Cart("buyer-1"), item_id="a", title="Blue mug", currency="EUR", stock=3, quantity=3)


def test_removing_a_line_is_always_allowed():
    cart = Cart("buyer-1", (line("a", currency="EUR"),))
    check_cart_quantity(cart, item_id="b", title="Hat", currency="USD", stock=0, quantity=0)


@pytest.mark.parametrize("quantity", [-1, MAX_LINE_QUANTITY + 1, True, 1.5])
def test_a_quantity_that_is_not_a_sensible_count_is_a_validation_error(quantity):
    with pytest.raises(ValidationFailed) as raised:
        check_cart_quantity(
            Cart("buyer-1"), item_id="a", title="Hat", currency="EUR", stock=10**6, quantity=quantity
        )
    assert [e.field for e in raised.value.errors] == ["quantity"]


# --- placing an order -------------------------------------------------------------------------------------


def test_an_order_is_placed_from_the_cart_lines_awaiting_payment():
    cart = Cart(
        "buyer-1",
        (
            line("a", quantity=2, price=1999, seller="seller-1", title="Blue mug"),
            line("b", quantity=1, price=500, seller="seller-2", title="Hat"),
        ),
    )
    placed = place_order(
        order_id="order-1", cart=cart, now=T0, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    assert placed.id == "order-1" and placed.buyer_id == "buyer-1"
    assert placed.status is OrderStatus.PENDING_PAYMENT
    assert placed.lines == (
        OrderLine("a", "seller-1", "Blue mug", 2, Money(1999, "EUR")),
        OrderLine("b", "seller-2", "Hat", 1, Money(500, "EUR")),
    )
    assert placed.total == Money(2 * 1999 + 500, "EUR")
    assert placed.created_at == placed.updated_at == T0
    assert placed.payment is None
    assert placed.seller_ids == {"seller-1", "seller-2"}
    assert placed.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def test_an_empty_cart_cannot_be_ordered():
    with pytest.raises(EmptyCart):
        place_order(order_id="order-1", cart=Cart("buyer-1"), now=T0)


def test_an_order_for_more_than_the_stock_is_refused():
    cart = Cart("buyer-1", (line("a", quantity=1, stock=5), line("b", quantity=4, stock=3, title="Hat")))
    with pytest.raises(InsufficientStock) as raised:
        place_order(order_id="order-1", cart=cart, now=T0)
    assert raised.value.available == 3 and "Hat" in raised.value.detail


def test_a_cart_that_ended_up_in_two_currencies_cannot_be_ordered():
    # Possible when a seller re-prices an item in another currency after it was carted.
    cart = Cart("buyer-1", (line("a", currency="EUR"), line("b", currency="USD")))
    with pytest.raises(CurrencyMismatch):
        place_order(order_id="order-1", cart=cart, now=T0)


# --- who sees what of an order ----------------------------------------------------------------------------


def test_a_seller_view_of_an_unpaid_order_keeps_only_their_lines_and_no_payment():
    two_sellers = dataclasses.replace(
        order(),
        lines=(*order().lines, OrderLine("item-2", "seller-2", "Hat", 1, Money(500, "EUR"))),
        total=Money(2500, "EUR"),
    )
    seen = two_sellers.as_seen_by(user(Role.SELLER, "seller-2"))
    assert seen.lines == (OrderLine("item-2", "seller-2", "Hat", 1, Money(500, "EUR")),)
    assert seen.total == Money(500, "EUR") and seen.payment is None
    assert two_sellers.as_seen_by(user(Role.BUYER, "buyer-1")) == two_sellers
    assert two_sellers.as_seen_by(user(Role.ADMIN, "admin-1")) == two_sellers


# --- Cart.with_line: the cart a change leaves, as reading it back would give it -------------------------------


def test_a_new_item_comes_last_and_a_changed_one_keeps_its_place():
    cart = Cart("buyer", (line("a"), line("b")))
    added = cart.with_line(line("c", quantity=2))
    assert [(kept.item_id, kept.quantity) for kept in added.lines] == [("a", 1), ("b", 1), ("c", 2)]
    changed = added.with_line(line("a", quantity=5, price=700))
    assert [(kept.item_id, kept.quantity) for kept in changed.lines] == [("a", 5), ("b", 1), ("c", 2)]
    assert changed.lines[0].unit_price == Money(700, "EUR")  # the line as given: today's price


def test_a_zero_quantity_removes_the_line_and_removing_a_missing_one_changes_nothing():
    cart = Cart("buyer", (line("a"), line("b")))
    assert [kept.item_id for kept in cart.with_line(line("a", quantity=0)).lines] == ["b"]
    assert cart.with_line(line("z", quantity=0)) == cart
    assert cart.lines == (line("a"), line("b"))  # the cart itself is left as it was


def test_a_cart_whose_total_exceeds_a_64_bit_order_total_is_refused_not_placed():
    # Every line within bounds (the highest price, the most per line), but enough of them to pass 2**63 - 1:
    # the order insert failed in the database, a 500.
    count = (2**63 - 1) // (MAX_CENTS * MAX_LINE_QUANTITY) + 1
    lines = tuple(
        line(f"i{n}", quantity=MAX_LINE_QUANTITY, price=MAX_CENTS, stock=MAX_LINE_QUANTITY)
        for n in range(count)
    )
    with pytest.raises(ValidationFailed) as raised:
        place_order(order_id="o-1", cart=Cart("buyer-1", lines), now=T0)
    assert [e.field for e in raised.value.errors] == ["cart"]
    below = lines[:-1]
    assert place_order(order_id="o-2", cart=Cart("buyer-1", below), now=T0).total.cents <= 2**63 - 1
