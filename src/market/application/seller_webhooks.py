"""Seller webhooks: a seller sets the endpoint for their `order.paid` events and reads what became of each
delivery; the delivery worker sends what the outbox holds (queued in the payment's own transaction, see
WebhookOutbox) with retries on a schedule.

Delivery is at least once: a worker that dies mid-attempt leaves the row to be claimed again once its lease
runs out. Receivers deduplicate on `webhook-id`, which is the delivery's id and the same on every retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from market.domain.errors import NotFound
from market.domain.users import User
from market.domain.webhooks import (
    AttemptResult,
    DeliveryRecord,
    DeliveryStatus,
    Verdict,
    WebhookEndpoint,
    check_webhook_url,
    judge_attempt,
)

from .ports import Clock, Page

# --- Ports ----------------------------------------------------------------------------------------------------


class SellerWebhookRepository(Protocol):
    async def get(self, seller_id: str) -> WebhookEndpoint | None: ...

    async def save(self, endpoint: WebhookEndpoint, *, keep_secret: bool = False) -> WebhookEndpoint:
        """Insert or replace the seller's endpoint (one per seller), atomically; with `keep_secret`, a stored
        endpoint keeps its secret (and `endpoint.secret` is used only when there is none). Returns what is
        stored, so that concurrent calls never answer with a secret another one overwrote."""


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A due delivery leased to one worker until `lease_until`, with the endpoint it goes to (None when the
    seller has none any more)."""

    id: str
    seller_id: str
    event_type: str
    payload: str
    attempts: int
    """Attempts made before this one."""
    traceparent: str | None
    """Where the event was raised (the checkout's trace): each attempt's span joins that trace."""
    lease_until: datetime
    endpoint: WebhookEndpoint | None


class WebhookDeliveryRepository(Protocol):
    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> Sequence[ClaimedDelivery]:
        """Take up to `limit` pending deliveries due at `now`, oldest first, and push their next attempt
        `lease` ahead so no other worker takes them meanwhile. Safe with many workers at once: a row is never
        handed to two workers while its lease holds."""

    async def record_attempt(
        self, claim: ClaimedDelivery, result: AttemptResult, verdict: Verdict, now: datetime
    ) -> None:
        """Store the attempt and the delivery's new state in one transaction; with `disable_endpoint`, also
        disable the endpoint the attempt went to and stop the seller's other pending deliveries. A worker whose
        lease ran out (another took the row) only adds its attempt; the state is the other worker's to set."""

    async def mark_disabled(self, claim: ClaimedDelivery, now: datetime) -> None:
        """Stop a delivery whose endpoint is gone or disabled, without an attempt."""

    async def list_for_seller(self, seller_id: str, limit: int, cursor: str | None) -> Page[DeliveryRecord]:
        """The seller's deliveries with their attempts, newest first. InvalidCursor for a foreign cursor."""


class WebhookUrlGuard(Protocol):
    async def check(self, url: str) -> None:
        """Raise WebhookUrlNotAllowed when the URL's host is (or resolves to) an address the service must not
        call, or does not resolve at all: one answer for both, so it reveals nothing about internal names."""


class WebhookSender(Protocol):
    async def send(self, delivery: ClaimedDelivery, now: datetime) -> AttemptResult:
        """One signed attempt to the delivery's endpoint. Never raises for what the network or the receiver
        does: every failure is an AttemptResult."""


@dataclass(frozen=True, slots=True)
class SellerWebhookPorts:
    """What the HTTP entrypoint needs for seller webhooks (built by bootstrap)."""

    endpoints: SellerWebhookRepository
    deliveries: WebhookDeliveryRepository
    guard: WebhookUrlGuard
    new_secret: Callable[[], str]
    """A fresh `whsec_<base64>` secret."""


# --- Use cases ------------------------------------------------------------------------------------------------


async def set_seller_webhook(
    seller: User,
    url: str,
    *,
    endpoints: SellerWebhookRepository,
    guard: WebhookUrlGuard,
    new_secret: Callable[[], str],
    clock: Clock,
    rotate_secret: bool = False,
) -> WebhookEndpoint:
    """Point the seller's events at `url`, and (re-)enable the endpoint.

    The secret is made on the first call and kept afterwards, also when the URL changes: the receiver's
    configuration and deliveries already queued stay verifiable. `rotate_secret` replaces it."""
    url = check_webhook_url(url)
    await guard.check(url)
    now = clock.now()
    endpoint = WebhookEndpoint(
        seller_id=seller.id,
        url=url,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
        disabled_at=None,
    )
    return await endpoints.save(endpoint, keep_secret=not rotate_secret)


async def get_seller_webhook(seller: User, *, endpoints: SellerWebhookRepository) -> WebhookEndpoint:
    endpoint = await endpoints.get(seller.id)
    if endpoint is None:
        raise NotFound("No webhook endpoint is set; set one with PUT /api/v1/seller/webhook.")
    return endpoint


async def list_webhook_deliveries(
    seller: User, limit: int, cursor: str | None, *, deliveries: WebhookDeliveryRepository
) -> Page[DeliveryRecord]:
    """The seller's own deliveries, newest first, each with its attempts."""
    return await deliveries.list_for_seller(seller.id, limit, cursor)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one worker pass did to one delivery (`result` is None when it was stopped without an attempt)."""

    delivery: ClaimedDelivery
    result: AttemptResult | None
    verdict: Verdict


async def deliver_due_webhooks(
    *,
    deliveries: WebhookDeliveryRepository,
    sender: WebhookSender,
    clock: Clock,
    retry_schedule_s: Sequence[int],
    batch_size: int = 10,
    lease: timedelta = timedelta(seconds=60),
) -> list[DeliveryReport]:
    """One pass of the delivery worker: claim up to `batch_size` due deliveries and attempt them concurrently.
    The lease must outlast one attempt (the sender's timeout) with room to record it."""
    claims = await deliveries.claim_due(clock.now(), batch_size, lease)

    async def deliver(claim: ClaimedDelivery) -> DeliveryReport:
        if claim.endpoint is None or not claim.endpoint.enabled:
            await deliveries.mark_disabled(claim, clock.now())
            return DeliveryReport(claim, None, Verdict(DeliveryStatus.DISABLED))
        result = await sender.send(claim, clock.now())
        now = clock.now()
        verdict = judge_attempt(result, claim.attempts + 1, retry_schedule_s, now)
        await deliveries.record_attempt(claim, result, verdict, now)
        return DeliveryReport(claim, result, verdict)

    # Each task runs its own statements (no transaction is open here), so they may overlap.
    return list(await asyncio.gather(*(deliver(c) for c in claims)))


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

SetSellerWebhook = Callable[..., Awaitable[WebhookEndpoint]]
"""(seller, url, *, rotate_secret=False)"""
GetSellerWebhook = Callable[[User], Awaitable[WebhookEndpoint]]
ListWebhookDeliveries = Callable[[User, int, str | None], Awaitable[Page[DeliveryRecord]]]
"""(seller, limit, cursor)"""
