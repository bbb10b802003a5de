"""Seller webhooks: the endpoint a seller registers, the rules for its URL, and what each delivery attempt
means for the delivery (delivered, retried on the schedule, given up, or stopped because the endpoint is gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from .errors import FieldError, ValidationFailed

MAX_WEBHOOK_URL = 2000  # what browsers and most proxies reliably carry
WEBHOOK_SCHEMES = ("https", "http")
ORDER_PAID = "order.paid"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # every attempt of the schedule failed
    DISABLED = "disabled"  # the endpoint answered 410 Gone (or was disabled): not attempted again


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where a seller's events go. `secret` is `whsec_<base64>` (Standard Webhooks); a 410 from the endpoint
    sets `disabled_at`, and setting the URL again clears it."""

    seller_id: str
    url: str = field(repr=False)  # its query may carry the receiver's token
    secret: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt gave: the response status (None when no response came), or why it failed."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver says this endpoint will never take events again."""
        return self.status_code == 410


@dataclass(frozen=True, slots=True)
class Verdict:
    """The delivery's state after an attempt. `next_attempt_at` is set only while it stays pending."""

    status: DeliveryStatus
    next_attempt_at: datetime | None = None
    disable_endpoint: bool = False


def judge_attempt(
    result: AttemptResult, attempt_number: int, retry_schedule_s: Sequence[int], now: datetime
) -> Verdict:
    """The delivery's fate after its `attempt_number`-th attempt (1 = the first). The schedule holds the delays
    before each retry, so a delivery gets `1 + len(retry_schedule_s)` attempts in all."""
    if result.succeeded:
        return Verdict(DeliveryStatus.DELIVERED)
    if result.gone:
        return Verdict(DeliveryStatus.DISABLED, disable_endpoint=True)
    if attempt_number <= len(retry_schedule_s):
        delay = timedelta(seconds=retry_schedule_s[attempt_number - 1])
        return Verdict(DeliveryStatus.PENDING, next_attempt_at=now + delay)
    return Verdict(DeliveryStatus.FAILED)


def check_webhook_url(url: str) -> str:
    """The URL, trimmed, if its form is acceptable: http(s), a host, no credentials, at most MAX_WEBHOOK_URL
    characters. Where it may lead (public addresses only) is the SSRF guard's business. Raises ValidationFailed."""
    url = url.strip()
    problem = _url_problem(url)
    if problem:
        raise ValidationFailed([FieldError("url", problem)], "The webhook URL is not valid.")
    return url


def _url_problem(url: str) -> str | None:
    if not url:
        return "must not be empty"
    if len(url) > MAX_WEBHOOK_URL:
        return f"must be at most {MAX_WEBHOOK_URL} characters"
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port out of 0-65535
    except ValueError:
        return "is not a valid URL"
    if port == 0:  # no service listens there: every delivery would fail
        return "is not a valid URL (a port is 1-65535)"
    if parts.scheme.lower() not in WEBHOOK_SCHEMES:
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); authenticate with the signature instead"
    return None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One recorded attempt, as the seller sees it."""

    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event to one seller and what became of it."""

    id: str
    seller_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    attempts: tuple[AttemptRecord, ...] = ()
