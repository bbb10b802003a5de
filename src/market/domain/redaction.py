"""What may be shown of values that carry secrets, in log lines, span attributes, error messages and reprs.

Secret-bearing dataclass fields are declared with `field(repr=False)` and request bodies derive from
`adapters.http.validation.RedactedStruct`, so that a traceback, a debugger or an error reporter printing an
object never prints its secret. URLs are shown through `safe_url`, the one place that decides what of a URL is
fit to show.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

INVALID_URL = "<invalid URL>"
FILTERED = "[Filtered]"
# Letters and digits of any script (\w): the addresses accounts are registered with include "zoé@example.com"
# and "пётр@почта.рф", which an ASCII-only pattern kept whole or cut after "zoé".
EMAIL = re.compile(r"[\w.%+-]+@[\w.-]+\.[^\W\d_]{2,}")
# Provider tokens and keys run to the end of the word, underscores included (`pm_card_visa`, `sk_live_…`).
_TOKENISH = re.compile(r"(?i)\b(?:bearer\s+\S+|(?:tok|pm|whsec|sk|rk)_\w+|eyJ[A-Za-z0-9_-]{10,}\S*)")
_CARD_NUMBER = re.compile(r"(?<!\w)\d(?:[ -]?\d){12,18}(?!\w)")
"""13-19 digits, perhaps grouped by spaces or dashes: a card number when its Luhn checksum holds."""

SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "hash",
    "card",
    "cvc",
    "authorization",
    "cookie",
    "key",
)
"""A field whose name contains one of these (in any case) holds a secret: its value is never kept where others
read it (the audit trail, a session's timeline)."""


def names_a_secret(field_name: str) -> bool:
    lowered = field_name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def safe_url(url: str) -> str:
    """`url` as it may appear in a log line, a span attribute (`url.full`) or an error message: scheme, host,
    port and path. Credentials (`user:password@`), the query and the fragment are dropped, because that is
    where tokens travel. A URL whose path is itself the secret (a Slack incoming webhook) must not be shown at
    all, not even through this."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal: showing any of it could show what should not be
        return INVALID_URL
    if ":" in host:  # an IPv6 literal gets its brackets back
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    # Built by hand: urlunsplit drops an empty authority (`sqlite:///var/x.db` would become `sqlite:/var/x.db`).
    authority = f"//{netloc}" if url[len(scheme) :].startswith("//") else netloc
    return f"{scheme}{authority}{parts.path}"


def filtered_text(value: str) -> str:
    """`value` with e-mail addresses, token-like strings and card numbers replaced by FILTERED: text a person
    typed (a client-reported event, a search) as it may be kept where others read it."""
    value = _TOKENISH.sub(FILTERED, EMAIL.sub(FILTERED, value))
    return _CARD_NUMBER.sub(lambda m: FILTERED if _luhn_valid(m.group()) else m.group(), value)


def _luhn_valid(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    total = 0
    for place, digit in enumerate(reversed(digits)):
        if place % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0
