"""Seller webhook endpoints and the delivery outbox's worker side (claim, record, list).

Rows are queued by SqlWebhookOutbox (commerce.py) in the payment's transaction. Endpoints are read and saved
through Piccolo's query builder; the worker's statements are written SQL (named constants below): the claim
locks rows per engine (`SKIP LOCKED` on PostgreSQL only), its updates are compare-and-set on the lease, and
the seller's list pages on a row comparison `(created_at, id) < (...)` that the builder cannot express. Claiming is safe with
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
from market.domain.validation import parse_id
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
from .tables import (
    SellerWebhookRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    insert_sql,
    row_values,
    select_list,
)

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
        row = await SellerWebhookRow.select().where(SellerWebhookRow.seller_id == seller_id).first()
        return _endpoint(row) if row else None

    async def save(self, endpoint: WebhookEndpoint, *, keep_secret: bool = False) -> WebhookEndpoint:
        row = SellerWebhookRow(
            seller_id=endpoint.seller_id,
            url=endpoint.url,
            secret=endpoint.secret,
            disabled_at=endpoint.disabled_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )
        # One statement (the conflict's row lock orders concurrent ones): what it returns is what is stored.
        kept = [] if keep_secret else [SellerWebhookRow.secret]
        (stored,) = (
            await SellerWebhookRow.insert(row)
            .on_conflict(
                target=SellerWebhookRow.seller_id,
                action="DO UPDATE",
                values=[
                    SellerWebhookRow.url,
                    *kept,
                    SellerWebhookRow.disabled_at,
                    SellerWebhookRow.updated_at,
                ],
            )
            .returning(*SellerWebhookRow.all_columns())
        )
        return _endpoint(stored)


_ENDPOINT_COLUMNS = select_list(SellerWebhookRow)
_DUE = "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= {}"
_DUE_ORDER = " ORDER BY next_attempt_at, id LIMIT {}"
_LEASE = (
    "UPDATE webhook_deliveries SET next_attempt_at = {{}} WHERE id IN ({marks})"
    " RETURNING id, seller_id, event_type, payload, attempts, traceparent"
)
_ENDPOINTS_OF = f"SELECT {_ENDPOINT_COLUMNS} FROM seller_webhooks WHERE seller_id IN ({{marks}})"
_INSERT_ATTEMPT = insert_sql(WebhookAttemptRow)
_RECORD_HELD_ATTEMPT = (
    "UPDATE webhook_deliveries SET attempts = attempts + 1, status = {}, next_attempt_at = {},"
    " last_status_code = {}, last_error = {}, updated_at = {}"
    " WHERE id = {} AND status = 'pending' AND next_attempt_at = {} RETURNING id"
)
_COUNT_LOST_ATTEMPT = (
    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = {},"
    " last_error = {}, updated_at = {} WHERE id = {}"
)
_DISABLE_ENDPOINT = (
    "UPDATE seller_webhooks SET disabled_at = {}, updated_at = {}"
    " WHERE seller_id = {} AND url = {} AND disabled_at IS NULL RETURNING seller_id"
)
_DISABLE_PENDING = (
    "UPDATE webhook_deliveries SET status = 'disabled', next_attempt_at = NULL, updated_at = {}"
    " WHERE seller_id = {} AND status = 'pending'"
)
_DISABLE_HELD = (
    "UPDATE webhook_deliveries SET status = 'disabled', next_attempt_at = NULL, updated_at = {}"
    " WHERE id = {} AND status = 'pending' AND next_attempt_at = {}"
)
_RETRY_NOW = (
    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = {}, updated_at = {}"
    " WHERE id = {} AND status IN ('pending', 'failed') RETURNING id"
)
_DELIVERIES = (
    f"SELECT {select_list(WebhookDeliveryRow, without=('payload', 'traceparent'))} FROM webhook_deliveries"
    " WHERE {where} ORDER BY created_at DESC, id DESC LIMIT {{}}"
)
_ATTEMPTS_OF = (
    "SELECT delivery_id, attempted_at, status_code, error, duration_ms FROM webhook_attempts"
    " WHERE delivery_id IN ({marks}) ORDER BY attempted_at, id"
)


class SqlWebhookDeliveryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> Sequence[ClaimedDelivery]:
        lease_until = now + lease
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.is_postgres else ""
        async with self._db.write_transaction():
            due = await self._db.fetch(_DUE + _DUE_ORDER + skip_locked, now, limit)
            if not due:
                return []
            ids = [str(r["id"]) for r in due]
            rows = await self._db.fetch(_LEASE.format(marks=_marks(ids)), lease_until, *ids)
            sellers = sorted({str(r["seller_id"]) for r in rows})
            endpoints = {
                str(e["seller_id"]): _endpoint(e)
                for e in await self._db.fetch(_ENDPOINTS_OF.format(marks=_marks(sellers)), *sellers)
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
            attempt = {
                "id": str(uuid.uuid4()),
                "delivery_id": claim.id,
                "attempted_at": now - timedelta(milliseconds=result.duration_ms),
                "status_code": result.status_code,
                "error": error,
                "duration_ms": result.duration_ms,
            }
            await self._db.fetch(_INSERT_ATTEMPT, *row_values(WebhookAttemptRow, attempt))
            held = await self._db.fetch(
                _RECORD_HELD_ATTEMPT,
                verdict.status.value,
                verdict.next_attempt_at,
                result.status_code,
                error,
                now,
                claim.id,
                claim.lease_until,
            )
            if not held:  # another worker owns the row now: count the attempt, leave its state alone
                await self._db.fetch(_COUNT_LOST_ATTEMPT, result.status_code, error, now, claim.id)
                return
            if verdict.disable_endpoint and claim.endpoint is not None:
                await self._disable_endpoint(claim.seller_id, claim.endpoint.url, now)

    async def _disable_endpoint(self, seller_id: str, url: str, now: datetime) -> None:
        # Only the URL that answered 410: if the seller has set another one meanwhile, that one stays enabled.
        disabled = await self._db.fetch(_DISABLE_ENDPOINT, now, now, seller_id, url)
        if disabled:
            await self._db.fetch(_DISABLE_PENDING, now, seller_id)

    async def mark_disabled(self, claim: ClaimedDelivery, now: datetime) -> None:
        await self._db.fetch(_DISABLE_HELD, now, claim.id, claim.lease_until)

    async def list_for_seller(self, seller_id: str, limit: int, cursor: str | None) -> Page[DeliveryRecord]:
        return await self.find(seller_id, None, limit, cursor)

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        canonical = parse_id(delivery_id)
        if canonical is None:
            return None
        page = await self.find(None, None, 1, None, delivery_id=canonical)
        return page.items[0] if page.items else None

    async def retry_now(self, delivery_id: str, now: datetime) -> bool:
        """Make a pending or failed delivery due at `now` (the worker attempts it on its next pass, with the same
        id, so the same `webhook-id`); False when it is delivered or disabled. A pending one in flight may be
        attempted twice: delivery is at least once, and receivers deduplicate on `webhook-id`."""
        rows = await self._db.fetch(_RETRY_NOW, now, now, delivery_id)
        return bool(rows)

    async def find(
        self,
        seller_id: str | None,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
        *,
        delivery_id: str | None = None,
    ) -> Page[DeliveryRecord]:
        """Deliveries with their attempts, newest first, of one seller and/or in one status (None: any)."""
        scope = "webhook-deliveries"
        if seller_id is None or status is not None:  # the seller's own list keeps the cursors it issued
            scope += f":{seller_id}:{status}"
        position = decode_keyset_cursor(cursor, scope)
        clauses: list[str] = []
        args: list[Any] = []
        if seller_id is not None:
            clauses.append("seller_id = {}")
            args.append(seller_id)
        if status is not None:
            clauses.append("status = {}")
            args.append(status.value)
        if delivery_id is not None:
            clauses.append("id = {}")
            args.append(delivery_id)
        if position is not None:
            clauses.append("(created_at, id) < ({}, {})")
            args += list(position)
        where = " AND ".join(clauses) or "1 = 1"
        rows = await self._db.fetch(_DELIVERIES.format(where=where), *args, limit + 1)
        page = rows[:limit]
        attempts: dict[str, list[AttemptRecord]] = {str(r["id"]): [] for r in page}
        if page:
            ids = list(attempts)
            for a in await self._db.fetch(_ATTEMPTS_OF.format(marks=_marks(ids)), *ids):
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
