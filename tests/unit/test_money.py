"""Money: integer minor units of one currency; amounts in different currencies never combine."""

from __future__ import annotations

import pytest

from market.domain.errors import CurrencyMismatch, DomainError
from market.domain.money import Money, is_currency


def test_adding_amounts_in_the_same_currency_adds_the_minor_units():
    assert Money(1999, "EUR") + Money(1, "EUR") == Money(2000, "EUR")


def test_subtracting_amounts_in_the_same_currency_subtracts_the_minor_units():
    assert Money(500, "USD") - Money(120, "USD") == Money(380, "USD")


def test_times_multiplies_the_amount_by_a_quantity():
    assert Money(250, "GBP").times(3) == Money(750, "GBP")


@pytest.mark.parametrize("operation", [lambda a, b: a + b, lambda a, b: a - b])
def test_combining_two_currencies_raises_currency_mismatch(operation):
    with pytest.raises(CurrencyMismatch) as raised:
        operation(Money(100, "EUR"), Money(100, "USD"))
    assert isinstance(raised.value, DomainError)
    assert "EUR" in raised.value.detail and "USD" in raised.value.detail


@pytest.mark.parametrize("cents", [19.99, 20.0, True, "1999", None])
def test_money_refuses_anything_but_an_int_of_minor_units(cents):
    with pytest.raises(TypeError):
        Money(cents, "EUR")


@pytest.mark.parametrize("currency", ["eur", "EURO", "", "XXX", "XAU", None, 978])
def test_money_refuses_codes_that_are_not_active_iso_4217_currencies(currency):
    with pytest.raises(ValueError):
        Money(100, currency)


def test_is_currency_accepts_upper_case_iso_codes_only():
    assert is_currency("EUR") and is_currency("JPY")
    assert not is_currency("eur") and not is_currency(None)


def test_money_is_immutable():
    money = Money(100, "EUR")
    with pytest.raises(AttributeError):
        money.cents = 5  # type: ignore[misc]
