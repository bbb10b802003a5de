"""Known devices: a signed cookie a browser or API client receives at a successful sign-in, naming (by a keyed
digest) the account it signed in to. Presented again with that account's e-mail, it moves the password check
into the hashing lane reserved for credentials that look legitimate (passwords.py), so that a flood of wrong
passwords cannot starve the people who signed in from this device before (OWASP's "device cookies").

It grants nothing else: the password is still checked, the per-address and per-account limits still count, and
a cookie for one account says nothing about any other. It is only ever issued after a right password, so it
reveals no account that the holder did not sign in to. Signed with a key derived from MARKET_SECRET_KEY:
rotating that key forgets every device (sign-ins then take the shared lane until the next success).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from market.domain.users import normalise_email

LIFETIME_S = 180 * 86400
_MAX_COOKIE = 128


class KnownDevices:
    def __init__(self, secret_key: str, lifetime_s: int = LIFETIME_S, now: Callable[[], float] = time.time):
        self._key = hmac.new(secret_key.encode(), b"market known devices", hashlib.sha256).digest()
        self.lifetime_s = lifetime_s
        self._now = now

    def issue(self, email: str) -> str:
        """The cookie value for a device that has just signed in to `email`'s account."""
        body = f"{self._account(email)}.{int(self._now()) + self.lifetime_s}"
        return f"{body}.{self._mac(body)}"

    def recognises(self, cookie: str | None, email: str) -> bool:
        """True when `cookie` is unexpired, signed by us and issued for `email`'s account."""
        if not cookie or len(cookie) > _MAX_COOKIE or not cookie.isascii():
            return False
        account, _, rest = cookie.partition(".")
        expires, _, mac = rest.partition(".")
        if not hmac.compare_digest(mac, self._mac(f"{account}.{expires}")):
            return False
        if not expires.isdigit() or int(expires) < self._now():
            return False
        return hmac.compare_digest(account, self._account(email))

    def _account(self, email: str) -> str:
        return hmac.new(self._key, b"account:" + normalise_email(email).encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, b"device:" + body.encode(), hashlib.sha256).hexdigest()[:32]
