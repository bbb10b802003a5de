"""Catalog rules: item validation, who may list and edit items, and how search queries are normalised."""

from __future__ import annotations

from datetime import timedelta

import pytest

from market.domain.catalog import (
    MAX_QUERY_TERMS,
    ItemStatus,
    new_item,
    normalise_query,
    validate_item_fields,
)
from market.domain.errors import PermissionDenied, ValidationFailed
from market.domain.money import Money
from market.domain.users import Role
from tests.support.factories import T0, item, item_fields, user


def _bad_fields(raised: pytest.ExceptionInfo[ValidationFailed]) -> set[str]:
    return {error.field for error in raised.value.errors}


# --- validation -------------------------------------------------------------------------------------------


def test_valid_item_fields_pass_validation():
    validate_item_fields(item_fields())


def test_item_validation_reports_every_bad_field_at_once():
    bad = {
        "title": "   ",
        "description": "x" * 5001,
        "price_cents": -1,
        "currency": "euro",
        "stock": 1.5,
        "category": "c" * 65,
    }
    with pytest.raises(ValidationFailed) as raised:
        validate_item_fields(bad)
    assert _bad_fields(raised) == set(bad)
    assert len(raised.value.errors) == len(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_cents", 19.99),
        ("price_cents", True),
        ("price_cents", "1999"),
        ("price_cents", 10**12 + 1),
        ("stock", -1),
        ("stock", False),
        ("title", "t" * 201),
        ("title", None),
        ("category", ""),
        ("currency", "XXX"),
    ],
)
def test_item_validation_rejects_one_bad_field_and_names_it(field, value):
    with pytest.raises(ValidationFailed) as raised:
        validate_item_fields(item_fields(**{field: value}))
    assert _bad_fields(raised) == {field}


@pytest.mark.parametrize(("field", "value"), [("price_cents", 0), ("stock", 0), ("description", "")])
def test_zero_price_zero_stock_and_empty_description_are_allowed(field, value):
    validate_item_fields(item_fields(**{field: value}))


def test_new_item_without_required_fields_names_each_missing_one():
    with pytest.raises(ValidationFailed) as raised:
        new_item(item_id="i", seller=user(Role.SELLER), fields={"title": "Mug"}, now=T0)
    assert _bad_fields(raised) == {"price_cents", "currency", "stock", "category"}


# --- listing ----------------------------------------------------------------------------------------------


def test_a_seller_lists_an_active_item_of_their_own_with_trimmed_title_and_category():
    seller = user(Role.SELLER, "seller-7")
    listed = new_item(
        item_id="item-9",
        seller=seller,
        fields=item_fields(title="  Blue mug  ", category=" kitchen "),
        now=T0,
    )
    assert listed.seller_id == "seller-7"
    assert listed.status is ItemStatus.ACTIVE
    assert (listed.title, listed.category) == ("Blue mug", "kitchen")
    assert listed.created_at == listed.updated_at == T0


def test_a_missing_description_defaults_to_empty():
    fields = item_fields()
    del fields["description"]
    assert new_item(item_id="i", seller=user(Role.SELLER), fields=fields, now=T0).description == ""


@pytest.mark.parametrize("role", [Role.BUYER, Role.ADMIN])
def test_only_sellers_can_list_items(role):
    with pytest.raises(PermissionDenied):
        new_item(item_id="i", seller=user(role, "someone"), fields=item_fields(), now=T0)


# --- ownership --------------------------------------------------------------------------------------------


def test_a_seller_may_edit_their_own_item():
    item(seller_id="seller-1").ensure_editable_by(user(Role.SELLER, "seller-1"))


def test_another_seller_may_not_edit_the_item():
    with pytest.raises(PermissionDenied):
        item(seller_id="seller-1").ensure_editable_by(user(Role.SELLER, "seller-2"))


def test_an_admin_may_edit_any_item():
    item(seller_id="seller-1").ensure_editable_by(user(Role.ADMIN, "admin-1"))


def test_a_buyer_may_not_edit_an_item_even_with_the_sellers_id():
    with pytest.raises(PermissionDenied):
        item(seller_id="seller-1").ensure_editable_by(user(Role.BUYER, "seller-1"))


# --- changes ----------------------------------------------------------------------------------------------


def test_changes_apply_only_seller_writable_fields_and_bump_updated_at():
    later = T0 + timedelta(hours=1)
    changed = item().with_changes(
        {
            "title": " Red mug ",
            "price_cents": 2500,
            "seller_id": "thief",
            "status": "archived",
            "id": "other",
            "created_at": later,
        },
        later,
    )
    assert (changed.title, changed.price) == ("Red mug", Money(2500, "EUR"))
    assert (changed.id, changed.seller_id, changed.status) == ("item-1", "seller-1", ItemStatus.ACTIVE)
    assert changed.created_at == T0
    assert changed.updated_at == later


def test_invalid_changes_are_refused_naming_each_field():
    with pytest.raises(ValidationFailed) as raised:
        item().with_changes({"stock": -3, "currency": "eur"}, T0)
    assert _bad_fields(raised) == {"stock", "currency"}


def test_archiving_sets_the_status_and_keeps_everything_else():
    later = T0 + timedelta(days=1)
    archived = item().archived(later)
    assert archived.status is ItemStatus.ARCHIVED
    assert archived.updated_at == later
    assert archived.title == item().title


def test_an_items_price_is_money_in_its_currency():
    price = item(price_cents=1999, currency="EUR").price
    assert (price.cents, price.currency) == (1999, "EUR")


# --- normalise_query --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Blue MUG", "blue mug"),
        ("  blue \t\n  mug  ", "blue mug"),
        ("mug", "mug"),
        ("Ceramic-Mug!", "ceramic-mug!"),
    ],
)
def test_normalise_query_lower_cases_and_collapses_whitespace(raw, expected):
    assert normalise_query(raw) == expected


def test_control_characters_such_as_nul_separate_words_like_spaces():
    assert normalise_query("Blue\x00MUG\x1f\x7f\x85teapot") == "blue mug teapot"


def test_a_query_is_at_most_200_characters_cut_between_words():
    # 32 words of 2 000 characters each were searched, stored in the analytics log and its rollups, and shown
    # in the search report and the session timeline: 64 KB a request, for anyone, unthrottled.
    long_words = " ".join(f"{n}" + "x" * 1_999 for n in range(32))
    assert len(normalise_query(long_words)) == 200
    many = " ".join(["teapot"] * 20 + ["mug"] * 12)  # 32 words, 191 characters: kept whole
    assert normalise_query(many) == many
    cut = normalise_query(
        " ".join(["porcelain"] * 20) + " ceramics"
    )  # 208: the last word would be cut; it goes
    assert cut == " ".join(["porcelain"] * 20)


def test_canonically_equivalent_queries_normalise_to_the_same_text():
    # "Café" typed precomposed (U+00E9) or decomposed (e + U+0301) is the same query: one line in the report.
    assert normalise_query("Cafe\u0301") == normalise_query("CAF\u00c9") == "caf\u00e9"


def test_normalise_query_folds_the_dotted_capital_i_to_a_plain_i_whatever_its_form():
    # Python lowers İ to i + U+0307, which neither engine's search finds (PostgreSQL lowers a stored İ to i).
    assert normalise_query("İstanbul") == normalise_query("I\u0307STANBUL") == "istanbul"
    assert normalise_query("İSTANBUL İZMİR") == "istanbul izmir"


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n", "\x00", "\x00\x01 \x9f"])
def test_an_empty_query_normalises_to_none(raw):
    assert normalise_query(raw) is None


def test_normalise_query_keeps_at_most_the_first_max_query_terms_words():
    words = [f"w{n}" for n in range(MAX_QUERY_TERMS + 10)]
    assert normalise_query(" ".join(words)) == " ".join(words[:MAX_QUERY_TERMS])
