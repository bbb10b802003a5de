"""Account use cases with in-memory fakes: register, issue a token, who am I, change a password, sign out
everywhere, and the operators' set-password, disable, enable and list."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from market.adapters.security.tokens import JwtTokenService
from market.application.accounts import (
    change_password,
    current_user,
    disable_user,
    enable_user,
    list_users,
    set_password,
    sign_out_everywhere,
    user_of_token,
)
from market.domain.errors import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    NotFound,
    TokenRevoked,
    ValidationFailed,
    WrongPassword,
)
from market.domain.events import UserRegistered
from market.domain.users import Role, UserStatus
from tests.support.fakes import FakeSignInThrottle
from tests.support.world import PASSWORD, World

# The same password as typed on two keyboards: "é" composed (NFC, one code point) or decomposed (NFD, "e" and a
# combining accent).
COMPOSED = unicodedata.normalize("NFC", "mot de passe très secret")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


@pytest.fixture
def world() -> World:
    return World()


async def test_registering_stores_the_user_with_a_hashed_password_and_normalised_email(world):
    user = await world.register(email="  Ada@Example.COM ", role="seller", display_name="  Ada  ")
    assert world.store.users == {user.id: user}
    assert user.email == "ada@example.com"
    assert user.display_name == "Ada"
    assert user.role is Role.SELLER
    assert user.password_hash == "hashed:" + PASSWORD
    assert user.password_hash != PASSWORD


async def test_registering_publishes_user_registered(world):
    user = await world.register(role="seller")
    assert world.events.published == [UserRegistered(user.id, "seller")]


async def test_registering_a_taken_email_raises_and_keeps_only_the_first_account(world):
    first = await world.register(email="ada@example.com")
    with pytest.raises(EmailAlreadyRegistered):
        await world.register(email="ADA@example.com", display_name="Impostor")
    assert list(world.store.users.values()) == [first]
    assert world.events.published == [UserRegistered(first.id, "buyer")]


async def test_an_invalid_registration_stores_nothing_and_publishes_nothing(world):
    with pytest.raises(ValidationFailed):
        await world.register(password="short")
    assert world.store.users == {}
    assert world.events.published == []


async def test_self_registration_as_admin_is_refused(world):
    with pytest.raises(ValidationFailed):
        await world.register(role="admin")
    assert world.store.users == {}


async def test_an_operator_can_register_an_admin(world):
    admin = await world.register(role="admin", allow_admin=True)
    assert admin.role is Role.ADMIN


async def test_the_right_password_gets_a_token_for_that_user(world):
    user = await world.register()
    token = await world.token("ada@example.com", PASSWORD)
    assert world.tokens.read(token.token).user_id == user.id
    assert token.expires_in > 0


async def test_sign_in_ignores_the_case_of_the_email(world):
    user = await world.register()
    token = await world.token("  ADA@example.com", PASSWORD)
    assert world.tokens.read(token.token).user_id == user.id


async def test_a_wrong_password_raises_invalid_credentials(world):
    await world.register()
    with pytest.raises(InvalidCredentials):
        await world.token("ada@example.com", PASSWORD + "!")


async def test_an_unknown_email_raises_invalid_credentials(world):
    await world.register()
    with pytest.raises(InvalidCredentials):
        await world.token("bob@example.com", PASSWORD)


async def test_unknown_email_and_wrong_password_are_indistinguishable(world):
    await world.register()
    with pytest.raises(InvalidCredentials) as unknown:
        await world.token("bob@example.com", PASSWORD)
    with pytest.raises(InvalidCredentials) as wrong:
        await world.token("ada@example.com", "wrong password!")
    assert unknown.value.detail == wrong.value.detail


def _count_verifications(world) -> list[str]:
    """The hashes the world's hasher is asked to verify against, from now on."""
    calls: list[str] = []
    verify = world.hasher.verify

    async def counting_verify(password_hash, password):
        calls.append(password_hash)
        return await verify(password_hash, password)

    world.hasher.verify = counting_verify
    return calls


async def test_an_unknown_email_still_verifies_a_password_to_equalise_timing(world):
    calls = _count_verifications(world)
    with pytest.raises(InvalidCredentials):
        await world.token("nobody@example.com", PASSWORD)
    assert calls == ["hashed:nobody"]


async def test_current_user_returns_the_account(world):
    user = await world.register()
    assert await current_user(user.id, repos=world.store.repos) == user


async def test_current_user_of_a_vanished_account_raises_not_found(world):
    with pytest.raises(NotFound):
        await current_user("00000000-0000-4000-8000-000000000999", repos=world.store.repos)


# --- sign-in bookkeeping and disabled accounts -----------------------------------------------------------


async def test_signing_in_records_the_time_of_the_latest_login(world):
    user = await world.register()
    assert world.store.users[user.id].last_login_at is None
    await world.token("ada@example.com", PASSWORD)
    first = world.store.users[user.id].last_login_at
    await world.token("ada@example.com", PASSWORD)
    assert first is not None and world.store.users[user.id].last_login_at > first


async def test_a_failed_sign_in_records_no_login(world):
    user = await world.register()
    with pytest.raises(InvalidCredentials):
        await world.token("ada@example.com", "wrong password!")
    assert world.store.users[user.id].last_login_at is None


async def test_a_disabled_account_cannot_sign_in_even_with_the_right_password(world):
    await world.register()
    await disable_user("ada@example.com", uow=world.store.uow)
    with pytest.raises(InvalidCredentials) as disabled:
        await world.token("ada@example.com", PASSWORD)
    with pytest.raises(InvalidCredentials) as wrong:
        await world.token("bob@example.com", PASSWORD)
    assert disabled.value.detail == wrong.value.detail


async def test_signing_in_to_a_disabled_account_still_verifies_its_password_to_equalise_timing(world):
    user = await world.register()
    await disable_user("ada@example.com", uow=world.store.uow)
    calls = _count_verifications(world)
    with pytest.raises(InvalidCredentials):
        await world.token("ada@example.com", PASSWORD)
    assert calls == [user.password_hash]


# --- revocation --------------------------------------------------------------------------------------------


async def test_signing_out_everywhere_revokes_every_token_issued_so_far_but_not_later_ones(world):
    user = await world.register()
    phone = await world.token("ada@example.com", PASSWORD)
    laptop = await world.token("ada@example.com", PASSWORD)
    assert world.accepted(phone) and world.accepted(laptop)

    await sign_out_everywhere(user, uow=world.store.uow)

    assert not world.accepted(phone) and not world.accepted(laptop)
    assert world.accepted(await world.token("ada@example.com", PASSWORD))


async def test_signing_out_refuses_a_token_the_real_service_has_already_verified_and_remembers(world):
    """JwtTokenService remembers tokens it verified: revocation must still come from the user row."""
    world.tokens = JwtTokenService("k" * 48, ttl_seconds=600)
    user = await world.register()
    token = (await world.token("ada@example.com", PASSWORD)).token
    signed_in = await user_of_token(token, tokens=world.tokens, repos=world.store.repos)
    assert signed_in is not None and signed_in.id == user.id

    await sign_out_everywhere(user, uow=world.store.uow)

    assert await user_of_token(token, tokens=world.tokens, repos=world.store.repos) is None


async def test_changing_the_password_revokes_old_tokens_and_only_the_new_password_signs_in(world):
    user = await world.register()
    old_token = await world.token("ada@example.com", PASSWORD)

    await change_password(
        world.store.users[user.id], PASSWORD, "a brand new password", uow=world.store.uow, hasher=world.hasher
    )

    assert not world.accepted(old_token)
    with pytest.raises(InvalidCredentials):
        await world.token("ada@example.com", PASSWORD)
    assert world.accepted(await world.token("ada@example.com", "a brand new password"))


async def test_a_wrong_current_password_changes_nothing(world):
    user = await world.register()
    token = await world.token("ada@example.com", PASSWORD)
    before = world.store.users[user.id]
    with pytest.raises(WrongPassword):
        await change_password(
            before, "not my password", "a brand new password", uow=world.store.uow, hasher=world.hasher
        )
    assert world.store.users[user.id] == before
    assert world.accepted(token)


async def test_a_password_change_under_a_token_revoked_meanwhile_changes_nothing(world):
    user = await world.register()
    as_read_with_the_token = world.store.users[user.id]
    await change_password(
        as_read_with_the_token, PASSWORD, "the first new password", uow=world.store.uow, hasher=world.hasher
    )
    after_first = world.store.users[user.id]

    with pytest.raises(TokenRevoked):
        await change_password(
            as_read_with_the_token,
            PASSWORD,
            "a second new password",
            uow=world.store.uow,
            hasher=world.hasher,
        )

    assert world.store.users[user.id] == after_first
    assert world.accepted(await world.token("ada@example.com", "the first new password"))


async def test_signing_out_under_a_token_revoked_meanwhile_leaves_later_tokens_working(world):
    user = await world.register()
    await sign_out_everywhere(user, uow=world.store.uow)
    later = await world.token("ada@example.com", PASSWORD)

    with pytest.raises(TokenRevoked):
        await sign_out_everywhere(user, uow=world.store.uow)

    assert world.accepted(later)


async def test_a_new_password_breaking_the_rules_is_refused_naming_new_password(world):
    user = await world.register()
    with pytest.raises(ValidationFailed) as raised:
        await change_password(
            world.store.users[user.id], PASSWORD, "short", uow=world.store.uow, hasher=world.hasher
        )
    assert [e.field for e in raised.value.errors] == ["new_password"]
    assert world.store.users[user.id].password_hash == "hashed:" + PASSWORD


async def test_a_new_password_equal_to_the_current_one_is_refused_naming_new_password(world):
    user = await world.register()
    token = await world.token("ada@example.com", PASSWORD)
    with pytest.raises(ValidationFailed) as raised:
        await change_password(
            world.store.users[user.id], PASSWORD, PASSWORD, uow=world.store.uow, hasher=world.hasher
        )
    assert [(e.field, e.message) for e in raised.value.errors] == [
        ("new_password", "must differ from the current password")
    ]
    assert world.accepted(token)  # nothing was revoked


async def test_an_operator_setting_a_password_revokes_tokens_and_the_new_password_signs_in(world):
    await world.register()
    old_token = await world.token("ada@example.com", PASSWORD)
    await set_password("ADA@example.com", "set by the operator", uow=world.store.uow, hasher=world.hasher)
    assert not world.accepted(old_token)
    assert world.accepted(await world.token("ada@example.com", "set by the operator"))


async def test_an_operator_cannot_set_a_password_breaking_the_rules(world):
    user = await world.register()
    with pytest.raises(ValidationFailed):
        await set_password("ada@example.com", "short", uow=world.store.uow, hasher=world.hasher)
    assert world.store.users[user.id].password_hash == "hashed:" + PASSWORD


async def test_disabling_revokes_tokens_at_once_and_enabling_does_not_bring_them_back(world):
    user = await world.register()
    token = await world.token("ada@example.com", PASSWORD)

    await disable_user("ada@example.com", uow=world.store.uow)
    assert world.store.users[user.id].status is UserStatus.DISABLED
    assert not world.accepted(token)

    await enable_user("ada@example.com", uow=world.store.uow)
    assert world.store.users[user.id].status is UserStatus.ACTIVE
    assert not world.accepted(token)
    assert world.accepted(await world.token("ada@example.com", PASSWORD))


@pytest.mark.parametrize("command", ["disable", "enable", "set-password"])
async def test_operator_commands_on_an_unknown_email_raise_not_found(world, command):
    await world.register()
    with pytest.raises(NotFound):
        if command == "disable":
            await disable_user("bob@example.com", uow=world.store.uow)
        elif command == "enable":
            await enable_user("bob@example.com", uow=world.store.uow)
        else:
            await set_password("bob@example.com", PASSWORD, uow=world.store.uow, hasher=world.hasher)


async def test_listing_users_gives_every_account_oldest_first(world):
    first = await world.register(email="ada@example.com")
    second = await world.register(email="bob@example.com", role="seller")
    assert [u.id for u in await list_users(repos=world.store.repos)] == [first.id, second.id]


# --- Unicode: one password, however it was typed -------------------------------------------------------------


@pytest.mark.parametrize(("registered", "typed"), [(DECOMPOSED, COMPOSED), (COMPOSED, DECOMPOSED)])
async def test_a_password_signs_in_whether_typed_composed_or_decomposed(world, registered, typed):
    assert COMPOSED != DECOMPOSED
    user = await world.register(password=registered)
    assert world.store.users[user.id].password_hash == "hashed:" + COMPOSED  # hashed in NFC
    assert world.accepted(await world.token("ada@example.com", typed))


async def test_a_hash_made_from_a_decomposed_password_before_normalisation_still_signs_in(world):
    user = await world.register()
    # As stored before passwords were normalised: the hash of the form typed at the time.
    world.store.users[user.id] = dataclasses.replace(
        world.store.users[user.id], password_hash="hashed:" + DECOMPOSED
    )
    assert world.accepted(await world.token("ada@example.com", DECOMPOSED))
    await change_password(
        world.store.users[user.id],
        DECOMPOSED,
        "a brand new password",
        uow=world.store.uow,
        hasher=world.hasher,
    )
    assert world.accepted(await world.token("ada@example.com", "a brand new password"))


async def test_a_wrong_decomposed_password_counts_as_one_failed_attempt(world):
    await world.register()
    throttle = FakeSignInThrottle(limit=5)
    with pytest.raises(InvalidCredentials):
        await world.token("ada@example.com", DECOMPOSED, throttle=throttle)
    assert throttle.attempts == {"ada@example.com": 1}


async def test_an_unknown_email_costs_as_many_hashes_as_a_wrong_decomposed_password(world):
    await world.register()
    calls = _count_verifications(world)
    for email in ("ada@example.com", "nobody@example.com"):
        with pytest.raises(InvalidCredentials):
            await world.token(email, DECOMPOSED)
    assert len(calls) == 4


async def test_a_password_change_to_the_same_password_typed_differently_is_refused(world):
    user = await world.register(password=COMPOSED)
    with pytest.raises(ValidationFailed) as raised:
        await change_password(
            world.store.users[user.id], COMPOSED, DECOMPOSED, uow=world.store.uow, hasher=world.hasher
        )
    assert [e.field for e in raised.value.errors] == ["new_password"]
