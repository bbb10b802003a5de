"""Account rules: what a registration must contain, and e-mail normalisation."""

from __future__ import annotations

import dataclasses

import pytest

from market.domain.errors import ValidationFailed
from market.domain.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    UserStatus,
    common_passwords,
    normalise_email,
    validate_new_password,
    validate_registration,
)
from tests.support import factories

GOOD = {
    "email": "ada@example.com",
    "password": "correct horse battery",
    "display_name": "Ada",
    "role": "buyer",
}


def _validate(**overrides):
    values = {**GOOD, **overrides}
    validate_registration(values["email"], values["password"], values["display_name"], values["role"])


def _bad_fields(raised):
    return {error.field for error in raised.value.errors}


@pytest.mark.parametrize("role", ["buyer", "seller"])
def test_buyers_and_sellers_may_register(role):
    _validate(role=role)


def test_registration_reports_every_bad_field_at_once():
    with pytest.raises(ValidationFailed) as raised:
        validate_registration("not-an-email", "short", "", "wizard")
    assert _bad_fields(raised) == {"email", "password", "display_name", "role"}


def test_nobody_registers_as_admin_by_themselves():
    with pytest.raises(ValidationFailed) as raised:
        _validate(role="admin")
    assert _bad_fields(raised) == {"role"}


def test_an_operator_may_create_an_admin():
    validate_registration(GOOD["email"], GOOD["password"], "Root", "admin", allow_admin=True)


def test_a_password_of_exactly_the_minimum_length_is_accepted():
    _validate(password="plum-tree-7"[:MIN_PASSWORD_LENGTH])


@pytest.mark.parametrize("password", ["password123", "1234567890", "QwertyUIOP", "Manchester", "1q2w3e4r5t"])
def test_one_of_the_most_common_passwords_is_refused_whatever_its_case(password):
    with pytest.raises(ValidationFailed) as raised:
        _validate(password=password)
    assert [(e.field, e.message) for e in raised.value.errors] == [
        ("password", "is one of the most commonly used passwords; choose another")
    ]


@pytest.mark.parametrize("password", ["a" * MIN_PASSWORD_LENGTH, "Z" * 40, "." * 12])
def test_a_password_of_one_repeated_character_is_refused(password):
    with pytest.raises(ValidationFailed) as raised:
        _validate(password=password)
    assert [(e.field, e.message) for e in raised.value.errors] == [
        ("password", "must not be one character repeated")
    ]


def test_the_common_password_list_holds_ten_thousand_entries_read_once():
    assert len(common_passwords()) == 10_000
    assert common_passwords() is common_passwords()
    assert "password" in common_passwords()


@pytest.mark.parametrize(
    "password", ["p" * (MIN_PASSWORD_LENGTH - 1), "p" * (MAX_PASSWORD_LENGTH + 1), None, 12]
)
def test_passwords_too_short_too_long_or_not_text_are_refused(password):
    with pytest.raises(ValidationFailed) as raised:
        _validate(password=password)
    assert _bad_fields(raised) == {"password"}


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com", None]
)
def test_malformed_email_addresses_are_refused(email):
    with pytest.raises(ValidationFailed) as raised:
        _validate(email=email)
    assert _bad_fields(raised) == {"email"}


def test_an_email_longer_than_254_characters_is_refused():
    with pytest.raises(ValidationFailed) as raised:
        _validate(email="a" * 250 + "@example.com")
    assert _bad_fields(raised) == {"email"}


def test_an_email_that_lower_case_makes_longer_than_254_characters_is_refused():
    """What is stored is the lower-cased address: "İ" lower-cases to two characters, so 251 typed became 311
    stored, past PostgreSQL's VARCHAR(254) (a 500 there, while SQLite stored it)."""
    email = "\u0130" * 60 + "@" + "a" * 186 + ".com"
    assert len(email) <= 254 < len(normalise_email(email))
    with pytest.raises(ValidationFailed) as raised:
        _validate(email=email)
    assert _bad_fields(raised) == {"email"}


@pytest.mark.parametrize("display_name", ["", "   ", "n" * 101, None])
def test_a_display_name_must_be_1_to_100_characters(display_name):
    with pytest.raises(ValidationFailed) as raised:
        _validate(display_name=display_name)
    assert _bad_fields(raised) == {"display_name"}


def test_email_addresses_are_normalised_to_trimmed_lower_case():
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"


def _account(**overrides):
    return dataclasses.replace(factories.user(), **overrides)


def test_a_token_of_the_current_version_signs_an_active_user_in():
    assert _account(token_version=3).accepts_token(3)


@pytest.mark.parametrize("version", [0, 2, 4])
def test_a_token_of_another_version_is_revoked(version):
    assert not _account(token_version=3).accepts_token(version)


def test_a_disabled_user_accepts_no_token():
    assert not _account(token_version=3, status=UserStatus.DISABLED).accepts_token(3)


def test_a_new_password_follows_the_same_rules_as_at_registration_and_names_its_field():
    validate_new_password("correct horse battery", field="new_password")
    with pytest.raises(ValidationFailed) as raised:
        validate_new_password("short", field="new_password")
    assert [e.field for e in raised.value.errors] == ["new_password"]
    with pytest.raises(ValidationFailed):
        validate_new_password("x" * (MAX_PASSWORD_LENGTH + 1))
