"""The JWT token service: what a token carries, and which tokens it refuses to read."""

from __future__ import annotations

import dataclasses
import time

import jwt
import pytest

from market.adapters.security.tokens import JwtTokenService
from market.application.ports import TokenClaims
from tests.support import factories

KEY = "k" * 48


def _signed(**claims: object) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": "user-1", "exp": now + 600, "aud": "market-api", **claims}, KEY, algorithm="HS256"
    )


def test_a_token_carries_its_user_and_the_users_token_version():
    service = JwtTokenService(KEY, ttl_seconds=600)
    user = factories.user(user_id="user-1")
    for version in (0, 5):
        token = service.issue(dataclasses.replace(user, token_version=version))
        assert service.read(token.token) == TokenClaims(user_id="user-1", token_version=version)


@pytest.mark.parametrize(
    "claims",
    [{}, {"ver": "0"}, {"ver": True}, {"ver": 1.0}, {"ver": None}],
    ids=["no version", "text", "bool", "float", "null"],
)
def test_a_token_without_a_whole_number_version_is_not_read(claims):
    assert JwtTokenService(KEY, ttl_seconds=600).read(_signed(**claims)) is None


def test_a_well_formed_token_signed_by_hand_is_read():
    """Control for the test above: the same token with a version is accepted."""
    assert JwtTokenService(KEY, ttl_seconds=600).read(_signed(ver=2)) == TokenClaims("user-1", 2)


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_is_refused_once_it_expires():
    clock = _Clock()
    service = JwtTokenService(KEY, ttl_seconds=600, clock=clock)
    token = _signed(ver=0)  # expires in 600 s by the real clock, which this test does not move
    assert service.read(token) == TokenClaims("user-1", 0)
    clock.now += 599
    assert service.read(token) == TokenClaims("user-1", 0)
    clock.now += 1  # `exp` reached: expired, as PyJWT itself would say
    assert service.read(token) is None


def test_remembered_tokens_are_bounded_and_the_oldest_go_first():
    service = JwtTokenService(KEY, ttl_seconds=600, kept=2)
    tokens = [_signed(ver=version) for version in range(3)]
    for version, token in enumerate(tokens):
        assert service.read(token) == TokenClaims("user-1", version)
    assert list(service._verified) == tokens[1:]
    # The forgotten one is verified again, not refused.
    assert service.read(tokens[0]) == TokenClaims("user-1", 0)
    assert list(service._verified) == [tokens[2], tokens[0]]


def test_a_token_signed_with_another_key_is_refused_even_after_a_good_one_was_read():
    service = JwtTokenService(KEY, ttl_seconds=600)
    good = _signed(ver=1)
    assert service.read(good) == TokenClaims("user-1", 1)
    forged = jwt.encode(jwt.decode(good, options={"verify_signature": False}), "x" * 48, algorithm="HS256")
    assert service.read(forged) is None
