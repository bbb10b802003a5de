"""Seller webhook endpoints and the delivery outbox's worker side (claim, record, list).

Rows are queued by SqlWebhookOutbox (commerce.py) in the payment's transaction. Claiming is safe with
many workers in many processes: on PostgreSQL `SELECT … FOR UPDATE SKIP LOCKED` (concurrent claimers skip
each other's rows instead of waiting), on SQLite an IMMEDIATE transaction (one writer at a time). The claim
pushes `next_attempt_at` forward by a lease; that timestamp doubles as the claim's fencing token, so a worker
whose lease ran out cannot overwrite the state set by the worker that took the row over.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from market.application.ports import Page
from market.application.seller_webhooks import ClaimedDelivery
from market.domain.webhooks import (
    AttemptRecord,
    AttemptResult,
    DeliveryRecord,
    DeliveryStatus,
    Verdict,
    WebhookEndpoint,
)

from .cursors import decode_keyset_cursor, encode_keyset_cursor
from .database import Database

MAX_ERROR_LENGTH = 500  # errors are ours (never the receiver's body), but keep rows small


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("{}" for _ in values)


def _endpoint(row: Mapping[str, Any]) -> WebhookEndpoint:
    return WebhookEndpoint(
        seller_id=str(row["seller_id"]),
        url=row["url"],
        secret=row["secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
    )


class PiccoloSellerWebhookRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, seller_id: str) -> WebhookEndpoint | None:
        rows = await self._db.fetch(
            "SELECT seller_id, url, secret, disabled_at, created_at, updated_at FROM seller_webhooks"
            " WHERE seller_id = {}",
            seller_id,
        )
        return _endpoint(rows[0]) if rows else None

    async def save(self, endpoint: WebhookEndpoint) -> None:
        await self._db.fetch(
            "INSERT INTO seller_webhooks (seller_id, url, secret, disabled_at, created_at, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT (seller_id) DO UPDATE SET url = excluded.url,"
            " secret = excluded.secret, disabled_at = excluded.disabled_at, updated_at = excluded.updated_at",
            endpoint.seller_id,
            endpoint.url,
            endpoint.secret,
            endpoint.disabled_at,
            endpoint.created_at,
            endpoint.updated_at,
        )


class PiccoloWebhookDeliveryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> Sequence[ClaimedDelivery]:
        lease_until = now + lease
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.is_postgres else ""
        async with self._db.write_transaction():
            due = await self._db.fetch(
                "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= {}"
                f" ORDER BY next_attempt_at, id LIMIT {{}}{skip_locked}",
                now,
                limit,
            )
            if not due:
                return []
            ids = [str(r["id"]) for r in due]
            rows = await self._db.fetch(
                f"UPDATE webhook_deliveries SET next_attempt_at = {{}} WHERE id IN ({_marks(ids)})"
                " RETURNING id, seller_id, event_type, payload, attempts, traceparent",
                lease_until,
                *ids,
            )
            sellers = sorted({str(r["seller_id"]) for r in rows})
            endpoints = {
                str(e["seller_id"]): _endpoint(e)
                for e in await self._db.fetch(
                    "SELECT seller_id, url, secret, disabled_at, created_at, updated_at FROM seller_webhooks"
                    f" WHERE seller_id IN ({_marks(sellers)})",
                    *sellers,
                )
            }
        order = {delivery_id: n for n, delivery_id in enumerate(ids)}
        return sorted(
            (
                ClaimedDelivery(
                    id=str(r["id"]),
                    seller_id=str(r["seller_id"]),
                    event_type=r["event_type"],
                    payload=r["payload"],
                    attempts=r["attempts"],
                    traceparent=r["traceparent"],
                    lease_until=lease_until,
                    endpoint=endpoints.get(str(r["seller_id"])),
                )
                for r in rows
            ),
            key=lambda claim: order[claim.id],
        )

    async def record_attempt(
        self, claim: ClaimedDelivery, result: AttemptResult, verdict: Verdict, now: datetime
    ) -> None:
        error = result.error[:MAX_ERROR_LENGTH] if result.error else None
        async with self._db.write_transaction():
            await self._db.fetch(
                "INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code, error, duration_ms)"
                " VALUES ({}, {}, {}, {}, {}, {})",
                str(uuid.uuid4()),
                claim.id,
                now - timedelta(milliseconds=result.duration_ms),
                result.status_code,
                error,
                result.duration_ms,
            )
            held = await self._db.fetch(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = {}, next_attempt_at = {},"
                " last_status_code = {}, last_error = {}, updated_at = {}"
                " WHERE id = {} AND status = 'pending' AND next_attempt_at = {} RETURNING id",
                verdict.status.value,
                verdict.next_attempt_at,
                result.status_code,
                error,
                now,
                claim.id,
                claim.lease_until,
            )
            if not held:  # another worker owns the row now: count the attempt, leave its state alone
                await self._db.fetch(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = {},"
                    " last_error = {}, updated_at = {} WHERE id = {}",
                    result.status_code,
                    error,
                    now,
                    claim.id,
                )
                return
            if verdict.disable_endpoint and claim.endpoint is not None:
                await self._disable_endpoint(claim.seller_id, claim.endpoint.url, now)

    async def _disable_endpoint(self, seller_id: str, url: str, now: datetime) -> None:
        # Only the URL that answered 410: if the seller has set another one meanwhile, that one stays enabled.
        disabled = await self._db.fetch(
            "UPDATE seller_webhooks SET disabled_at = {}, updated_at = {}"
            " WHERE seller_id = {} AND url = {} AND disabled_at IS NULL RETURNING seller_id",
            now,
            now,
            seller_id,
            url,
        )
        if disabled:
            await self._db.fetch(
                "UPDATE webhook_deliveries SET status = 'disabled', next_attempt_at = NULL, updated_at = {}"
                " WHERE seller_id = {} AND status = 'pending'",
                now,
                seller_id,
            )

    async def mark_disabled(self, claim: ClaimedDelivery, now: datetime) -> None:
        await self._db.fetch(
            "UPDATE webhook_deliveries SET status = 'disabled', next_attempt_at = NULL, updated_at = {}"
            " WHERE id = {} AND status = 'pending' AND next_attempt_at = {}",
            now,
            claim.id,
            claim.lease_until,
        )

    async def list_for_seller(self, seller_id: str, limit: int, cursor: str | None) -> Page[DeliveryRecord]:
        scope = "webhook-deliveries"
        position = decode_keyset_cursor(cursor, scope)
        where, args = "seller_id = {}", [seller_id]
        if position is not None:
            where += " AND (created_at, id) < ({}, {})"
            args += list(position)
        rows = await self._db.fetch(
            "SELECT id, seller_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error,"
            f" created_at, updated_at FROM webhook_deliveries WHERE {where}"
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            *args,
            limit + 1,
        )
        page = rows[:limit]
        attempts: dict[str, list[AttemptRecord]] = {str(r["id"]): [] for r in page}
        if page:
            ids = list(attempts)
            for a in await self._db.fetch(
                "SELECT delivery_id, attempted_at, status_code, error, duration_ms FROM webhook_attempts"
                f" WHERE delivery_id IN ({_marks(ids)}) ORDER BY attempted_at, id",
                *ids,
            ):
                attempts[str(a["delivery_id"])].append(
                    AttemptRecord(a["attempted_at"], a["status_code"], a["error"], a["duration_ms"])
                )
        records = [
            DeliveryRecord(
                id=str(r["id"]),
                seller_id=str(r["seller_id"]),
                event_type=r["event_type"],
                status=DeliveryStatus(r["status"]),
                attempt_count=r["attempts"],
                last_status_code=r["last_status_code"],
                last_error=r["last_error"],
                # During an attempt this is its lease's end: when the row is retried should the worker die.
                next_attempt_at=r["next_attempt_at"] if r["status"] == DeliveryStatus.PENDING else None,
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                attempts=tuple(attempts[str(r["id"])]),
            )
            for r in page
        ]
        next_cursor = None
        if len(rows) > limit:
            last = records[-1]
            next_cursor = encode_keyset_cursor(scope, last.created_at, last.id)
        return Page(items=records, next_cursor=next_cursor)
