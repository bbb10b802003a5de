"""Sentry: unexpected errors only, each reported once, carrying the OpenTelemetry trace id and the user as
`{id, role}`, with secrets and personal data scrubbed everywhere (messages, exception values, extras), and no
local variables at all.

Expected outcomes (a declined card, out of stock, any 4xx) are metrics, never Sentry events: reporting is
explicit (`report_exception`) from the one place that turns errors into 5xx responses, and Sentry's own
Litestar integration — which would report domain errors too — is switched off.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.transport import HttpTransport

from market.build import release
from market.config import SentrySettings
from market.domain.redaction import EMAIL

from . import names, request_context
from .asgi import known_method
from .drops import DROPS, SENTRY_EVENTS

log = logging.getLogger(__name__)

# Key names whose values never leave the process (the scrubber matches keys, case-insensitively).
DENYLIST = [
    *DEFAULT_DENYLIST,
    *DEFAULT_PII_DENYLIST,
    "email",
    "e_mail",
    "card",
    "card_token",
    "card_number",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "secret_key",
    "webhook_secret",
    "payment_method",
    "idempotency_key",
    "dsn",
    "current_password",
    "new_password",
    "password_hash",
]
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_CARD_TOKEN = re.compile(r"\b(?:tok|pm)_[A-Za-z0-9]+")
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")
# The credentials, query and fragment of a URL quoted inside a string (an exception message, say): where
# passwords and tokens travel (the same parts `domain.redaction.safe_url` drops).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"]+@")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#'\"]*)[?#][^\s'\"]*")
# Secret headers inside reprs of header containers (`'cookie': '...'`, `(b'cookie', b'...')`), which the
# key-based scrubber never sees: a framework frame's local variables hold the raw request headers.
_SECRET_HEADER = re.compile(
    r"""(?i)(b?['"](?:set-)?cookie['"]\s*[:,]\s*b?|b?['"](?:proxy-)?authorization['"]\s*[:,]\s*b?)(['"])(?:(?!\2).)*\2"""
)
# `…password…=` / `'…password…':` inside reprs (a request body Struct, a dict) held by an innocently named local.
_PASSWORD_VALUE = re.compile(r"""(?i)(passw(?:or)?d\w*['"]?\s*[=:]\s*b?)(['"])(?:(?!\2).)*\2""")
FILTERED = "[Filtered]"
MIN_KNOWN_SECRET = 8
"""Shorter values are not hunted for in events: they would filter ordinary words."""

_enabled = False
_known_secrets: tuple[str, ...] = ()
_session_page: str | None = None


def init_sentry(settings: SentrySettings, session_page: str | None = None) -> bool:
    """Start the Sentry client when a DSN is configured; returns whether it is on. `session_page` is the URL
    of a session's timeline with `{session_id}`: each event links to the session it happened in."""
    global _enabled, _session_page
    _session_page = session_page
    if not settings.dsn:
        return False
    if _enabled:  # once per process
        return True
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=release(settings.release, settings.build_sha),
        # No default PII (user IPs, cookies, request bodies): sentry-sdk's default, left unset because setting
        # `send_default_pii` is deprecated (2.75, a warning at every start) and its successor, `data_collection`,
        # turns the event scrubber below off.
        # No local variables: the scrubber matches key names, never what a repr prints, and every frame
        # holds something secret under an innocent name (the services with the payment webhook secret, a
        # command with the password in flight, a framework's raw headers). The stack trace with file, line
        # and code is what on-call needs; values belong in the trace's attributes, which are chosen.
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=DENYLIST, recursive=True),
        before_send=scrub_event,
        before_send_transaction=lambda event, hint: None,  # traces go to OpenTelemetry, not Sentry
        integrations=[
            # Link events to the OTel trace without a second exporter or replacing the W3C propagator.
            OTLPIntegration(setup_otlp_traces_exporter=False, setup_propagator=False),
            # No log breadcrumbs and no log events: breadcrumbs are shared by the whole process, so access
            # lines of other requests (their query strings) would ride along on every event, past the
            # scrubber; and each line would cost every request. The OTel trace holds the request's story.
            LoggingIntegration(level=None, event_level=None),
        ],
        # Only what is listed above: the Litestar integration would report domain errors (4xx) too, and the
        # asyncpg/httpx ones wrap every query and call, a cost every request pays even when it is not sampled
        # (figures: benchmarks/README.md).
        auto_enabling_integrations=False,
        shutdown_timeout=2,
        transport=CountingHttpTransport,
    )
    _enabled = True
    return True


def never_send(*secrets: str | None) -> None:
    """Secrets the process knows (keys, webhook secrets, passwords, secret URLs): replaced by `[Filtered]`
    wherever they appear in an event, whatever the key or the text around them."""
    global _known_secrets
    known = {*_known_secrets, *(s for s in secrets if s and len(s) >= MIN_KNOWN_SECRET)}
    _known_secrets = tuple(sorted(known, key=len, reverse=True))  # a URL before the token inside it


def sentry_enabled() -> bool:
    return _enabled


def report_exception(
    exc: BaseException,
    *,
    user: Any = None,
    route: str | None = None,
    method: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> str | None:
    """Send one event for an unexpected error; returns its id (None when Sentry is off). `trace_id` (and
    `span_id`) are the reference the client was given: the event carries exactly that trace id, also when
    the OpenTelemetry SDK is disabled and there is no OTel span to link from."""
    if not _enabled:
        return None
    with sentry_sdk.new_scope() as scope:
        _describe(scope, user, route, method, trace_id, span_id)
        return sentry_sdk.capture_exception(exc)


def report_message(
    message: str,
    *,
    level: str = "info",
    user: Any = None,
    route: str | None = None,
    method: str | None = None,
) -> str | None:
    if not _enabled:
        return None
    with sentry_sdk.new_scope() as scope:
        _describe(scope, user, route, method)
        return sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]


def _describe(
    scope: Any,
    user: Any,
    route: str | None,
    method: str | None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> None:
    # The event's trace id is the reference the client got: given, or the request's (telemetry.request_context),
    # which the edge issues even when the OpenTelemetry SDK is disabled and there is no span to link from.
    request = request_context.current()
    trace_id = trace_id or (request.trace_id if request is not None else None)
    if trace_id:
        scope.set_context("trace", {"trace_id": trace_id, "span_id": span_id or _current_span_id()})
    if user is not None:
        scope.set_user({"id": user.id, "role": getattr(user.role, "value", str(user.role))})
    if route:
        scope.set_tag(names.HTTP_ROUTE, route)
        # The event's `transaction`: the route template, so that Sentry groups by endpoint, never by raw path.
        scope.set_transaction_name(f"{known_method(method)} {route}" if method else route, source="route")
    if method:
        scope.set_tag(names.HTTP_REQUEST_METHOD, known_method(method))
    if request is not None:
        scope.set_tag(names.SESSION_ID, request.session_id)
        context = {"id": request.session_id}
        if _session_page:
            context["url"] = _session_page.replace("{session_id}", request.session_id)
            scope.set_tag(names.SESSION_PAGE_URL, context["url"])
        scope.set_context(names.SENTRY_SESSION_CONTEXT, context)


def _current_span_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else secrets.token_hex(8)


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the key-based scrubber cannot see, inside any string (messages, exception values): the secrets the
    process knows (`never_send`), e-mail addresses, bearer tokens, card tokens, passwords inside reprs,
    `whsec_` secrets, and the credentials and query of any URL."""
    return _scrub(event)  # type: ignore[no-any-return]


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _known_secrets:
            value = value.replace(secret, FILTERED)
        return _scrub_patterns(value) if _may_match_a_pattern(value) else value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _scrub_patterns(value: str) -> str:
    value = _URL_USERINFO.sub(rf"\1{FILTERED}@", value)
    value = _URL_QUERY.sub(rf"\1?{FILTERED}", value)
    value = _WEBHOOK_SECRET.sub(FILTERED, value)
    value = _SECRET_HEADER.sub(lambda m: f"{m[1]}{m[2]}{FILTERED}{m[2]}", value)
    value = _PASSWORD_VALUE.sub(lambda m: f"{m[1]}{m[2]}{FILTERED}{m[2]}", value)
    value = EMAIL.sub(FILTERED, value)
    value = _BEARER.sub("Bearer " + FILTERED, value)
    return _CARD_TOKEN.sub(FILTERED, value)


def _may_match_a_pattern(value: str) -> bool:
    """False when no pattern of `_scrub_patterns` can match: each needs one of these substrings (case aside).
    An event holds hundreds of strings (the source lines around each frame, paths, names), and few hold any:
    eight regular-expression scans of each took ~5 ms per event, the most of an unexpected error's cost
    (benchmarks/README.md); this check is ~1 µs a string. Only for ASCII text: the patterns' case-insensitive
    matching also takes some other letters for ASCII ones (`ſ` for `s`, `ı` for `i`), which lowering leaves
    as they are."""
    if not value.isascii():
        return True
    low = value.lower()
    return (
        "@" in low  # e-mail addresses, URL credentials
        or "://" in low  # URL credentials and queries
        or "passw" in low
        or "bearer" in low
        or "cookie" in low
        or "authorization" in low
        or "tok_" in low
        or "pm_" in low
        or "whsec_" in low
    )


# Why Sentry's transport gave up on an event; client-side filters (`before_send`, sampling) are choices.
_DELIVERY_LOSSES = frozenset(
    {"queue_overflow", "network_error", "send_error", "ratelimit_backoff", "internal_sdk_error"}
)


class CountingHttpTransport(HttpTransport):
    """Sentry's default transport, counting the error and message events it loses in
    `market.telemetry.dropped{market.telemetry.signal="sentry_events"}`."""

    def record_lost_event(
        self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1
    ) -> None:
        category = item.data_category if item is not None else data_category
        if reason in _DELIVERY_LOSSES and category == "error":
            DROPS.add(SENTRY_EVENTS, 1 if item is not None else quantity)
        super().record_lost_event(reason, data_category, item, quantity=quantity)

    def _handle_response(self, response: Any, envelope: Any) -> None:
        super()._handle_response(response=response, envelope=envelope)
        # A 429 loses the events it answers, yet the SDK records no loss (Sentry counted them server-side).
        if response.status == 429 and envelope is not None:
            DROPS.add(SENTRY_EVENTS, sum(item.data_category == "error" for item in envelope.items))


def close_sentry() -> None:
    if _enabled:
        client = sentry_sdk.get_client()
        client.close(timeout=2)
