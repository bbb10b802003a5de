"""Account use cases with in-memory fakes: register, issue a token, who am I."""

from __future__ import annotations

import pytest

from market.application.accounts import Register, current_user, issue_token, register_user
from market.domain.errors import EmailAlreadyRegistered, InvalidCredentials, NotFound, ValidationFailed
from market.domain.events import UserRegistered
from market.domain.users import Role
from tests.fakes import (
    FakeClock,
    FakeEventPublisher,
    FakeIdGenerator,
    FakePasswordHasher,
    FakeStore,
    FakeTokenService,
)

PASSWORD = "correct horse battery"


class World:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.hasher = FakePasswordHasher()
        self.ids = FakeIdGenerator()
        self.clock = FakeClock()
        self.events = FakeEventPublisher()
        self.tokens = FakeTokenService()

    async def register(self, email: str = "ada@example.com", role: str = "buyer", **kwargs):
        return await register_user(
            Register(email, kwargs.pop("password", PASSWORD), kwargs.pop("display_name", "Ada"), role),
            uow=self.store.uow,
            hasher=self.hasher,
            ids=self.ids,
            clock=self.clock,
            events=self.events,
            **kwargs,
        )

    async def token(self, email: str, password: str):
        return await issue_token(
            email,
            password,
            repos=self.store.repos,
            hasher=self.hasher,
            tokens=self.tokens,
            dummy_hash="hashed:nobody",
        )


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
    assert world.tokens.subject(token.token) == user.id
    assert token.expires_in > 0


async def test_sign_in_ignores_the_case_of_the_email(world):
    user = await world.register()
    token = await world.token("  ADA@example.com", PASSWORD)
    assert world.tokens.subject(token.token) == user.id


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


async def test_an_unknown_email_still_verifies_a_password_to_equalise_timing(world):
    calls = []
    verify = world.hasher.verify

    async def counting_verify(password_hash, password):
        calls.append(password_hash)
        return await verify(password_hash, password)

    world.hasher.verify = counting_verify
    with pytest.raises(InvalidCredentials):
        await world.token("nobody@example.com", PASSWORD)
    assert calls == ["hashed:nobody"]


async def test_current_user_returns_the_account(world):
    user = await world.register()
    assert await current_user(user.id, repos=world.store.repos) == user


async def test_current_user_of_a_vanished_account_raises_not_found(world):
    with pytest.raises(NotFound):
        await current_user("00000000-0000-4000-8000-000000000999", repos=world.store.repos)
