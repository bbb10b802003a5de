"""A verified provider event is made storable before anything uses it, whatever the provider's format: ids no
column could hold are refused (a 400 the provider hears of, not a failed insert it retries), a decline reason is
cut to what is kept."""

from __future__ import annotations

import dataclasses

import pytest

from market.adapters.payments.events import MAX_ID, MAX_REASON, storable
from market.application.ports import ProviderEvent
from market.domain.errors import InvalidProviderEvent

EVENT = ProviderEvent(
    id="evt_1",
    type="payment.failed",
    order_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
    provider_payment_id="ch_1",
    reason="card_declined",
    amount_cents=1999,
    currency="EUR",
)


def test_an_ordinary_event_is_kept_as_it_is():
    assert storable(EVENT) == EVENT
    assert storable(None) is None


@pytest.mark.parametrize("name", ["id", "order_id", "provider_payment_id", "refund_id", "provider_refund_id"])
@pytest.mark.parametrize("value", ["", "x" * (MAX_ID + 1), "a\x00b", "lone \ud800 surrogate"])
def test_an_id_no_column_could_hold_makes_the_event_not_understood(name, value):
    with pytest.raises(InvalidProviderEvent):
        storable(dataclasses.replace(EVENT, **{name: value}))


def test_an_id_of_the_longest_kept_length_is_kept():
    longest = dataclasses.replace(EVENT, id="e" * MAX_ID, provider_payment_id="p" * MAX_ID)
    assert storable(longest) == longest


@pytest.mark.parametrize(
    "change", [{"amount_cents": -1}, {"amount_cents": 2**63}, {"currency": "eur"}, {"currency": "EURO"}]
)
def test_an_amount_out_of_range_or_a_currency_that_is_no_code_makes_the_event_not_understood(change):
    with pytest.raises(InvalidProviderEvent):
        storable(dataclasses.replace(EVENT, **change))


def test_a_long_decline_reason_is_cut_and_loses_its_nuls_and_lone_surrogates():
    reason = "do\x00_not_honor: " + "x" * 100 + "\ud800"
    kept = storable(dataclasses.replace(EVENT, reason=reason))
    assert kept is not None and kept.reason == ("do_not_honor: " + "x" * 100)[:MAX_REASON]
    assert storable(dataclasses.replace(EVENT, reason="\x00")).reason is None
    assert storable(dataclasses.replace(EVENT, reason="\ud800")).reason == "?"
