"""Provider webhook signatures: `Market-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.

The same scheme as Stripe's `Stripe-Signature`, so one verifier serves both. Verification is constant-time,
over the raw body bytes, with a 300 s tolerance in both directions (stale and future timestamps fail).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from market.application.ports import InvalidProviderSignature

TOLERANCE_S = 300
MAX_HEADER_PARTS = 16
"""Parts of a header read at most (Stripe sends `t` and one `v1` per active secret, plus the odd `v0`)."""
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class InvalidSignature(InvalidProviderSignature):
    """The signature header is missing, malformed, stale, from the future, or does not match the body.

    `reason` is one of a bounded set, fit for a metric attribute: `missing_signature`, `malformed`,
    `stale_signature` (outside the tolerance, either way), `bad_signature` (no match: another secret, or a
    tampered body)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str | None, *, now: float | None = None) -> None:
    """Raise InvalidSignature unless `header` signs `body` with `secret` within the tolerance."""
    if not header:
        raise InvalidSignature("missing signature header", "missing_signature")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(",")[:MAX_HEADER_PARTS]:
        key, _, value = part.strip().partition("=")
        if key == "t":
            if timestamp is not None:  # which one was signed? Neither is taken.
                raise InvalidSignature("two timestamps", "malformed")
            # ASCII digits only, and few: int() also reads "١٢", "1_000" and 400-digit numbers (which then
            # overflow the float arithmetic below).
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise InvalidSignature("malformed timestamp", "malformed")
            timestamp = int(value)
        elif key == "v1" and _HEX_DIGEST.fullmatch(value):  # compare_digest refuses non-ASCII str
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature("malformed signature header", "malformed")
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_S:
        raise InvalidSignature("timestamp outside the tolerance", "stale_signature")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise InvalidSignature("signature does not match", "bad_signature")
