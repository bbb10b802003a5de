"""What may be shown of values that carry secrets, in log lines, span attributes, error messages and reprs.

Secret-bearing dataclass fields are declared with `field(repr=False)` and request bodies derive from
`adapters.http.validation.RedactedStruct`, so that a traceback, a debugger or an error reporter printing an
object never prints its secret. URLs are shown through `safe_url`, the one place that decides what of a URL is
fit to show.
"""

from __future__ import annotations

from urllib.parse import urlsplit

INVALID_URL = "<invalid URL>"

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
