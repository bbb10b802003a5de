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
