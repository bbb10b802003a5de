"""Signed, expiring bearer tokens (JWT, HS256)."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import jwt

from market.application.ports import AccessToken, TokenClaims
from market.domain.users import User
from market.private_files import private_dir

log = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_AUDIENCE = "market-api"
# The user's token version at issue time; a token without it (issued before revocation existed) is refused.
_VERSION_CLAIM = "ver"
VERIFIED_TOKENS_KEPT = 10_000
"""How many verified tokens `read` remembers (a few MB at most)."""


class JwtTokenService:
    """Verifying a token (HMAC, JSON, claims) is a sizeable share of a short request's CPU, and a client sends
    the same token request after request: a token verified once is remembered, by its whole text, until it
    expires. That is safe because what `read` answers depends only on the token and the key: revocation is the
    user row's to decide (its token version, read on every request), never the token's, so a remembered token
    of a signed-out user is still refused."""

    def __init__(
        self,
        secret_key: str,
        ttl_seconds: int,
        *,
        kept: int = VERIFIED_TOKENS_KEPT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = secret_key
        self._ttl = ttl_seconds
        self._kept = kept
        self._clock = clock
        # token -> (claims, expiry in epoch seconds); insertion-ordered, so the oldest entry goes first
        self._verified: dict[str, tuple[TokenClaims, int]] = {}

    def issue(self, user: User) -> AccessToken:
        now = int(time.time())
        claims = {
            "sub": user.id,
            "role": user.role.value,
            "iat": now,
            "exp": now + self._ttl,
            "aud": _AUDIENCE,
            _VERSION_CLAIM: user.token_version,
        }
        return AccessToken(token=jwt.encode(claims, self._key, algorithm=_ALGORITHM), expires_in=self._ttl)

    def read(self, token: str) -> TokenClaims | None:
        known = self._verified.get(token)
        if known is not None:
            claims, expires = known
            if self._clock() < expires:  # PyJWT's own rule: expired once `exp` is reached
                return claims
            del self._verified[token]
            return None
        claims = self._verify(token)
        if claims is not None:
            if len(self._verified) >= self._kept:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
            return claims[0]
        return None

    def _verify(self, token: str) -> tuple[TokenClaims, int] | None:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                options={"require": ["sub", "exp", "aud", _VERSION_CLAIM]},
            )
        except jwt.PyJWTError:
            return None
        subject, version = claims.get("sub"), claims.get(_VERSION_CLAIM)
        if not isinstance(subject, str) or isinstance(version, bool) or not isinstance(version, int):
            return None
        # PyJWT has checked `exp` as int(exp) against the clock, so this cannot fail.
        return TokenClaims(user_id=subject, token_version=version), int(claims["exp"])


def load_or_create_secret_key(var_dir: Path) -> str:
    """The embedded default's signing key: generated once into `var/secret_key` (mode 0600) and reused, so
    tokens survive restarts and every worker agrees. Creation is atomic (O_EXCL), safe with several workers."""
    path = var_dir / "secret_key"
    private_dir(var_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it this very moment
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it to generate a new key") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    log.warning("MARKET_SECRET_KEY is not set: generated a signing key", extra={"path": str(path)})
    return key
