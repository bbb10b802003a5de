"""An order's refunds (`refunds`, m0009): written SQL, the same on both engines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from market.domain.money import Money
from market.domain.refunds import Refund, RefundReason, RefundStatus
from market.domain.validation import parse_id

from .database import Database
from .tables import RefundRow, insert_sql, row_values, select_list

_INSERT_REFUND = insert_sql(RefundRow)
_REFUNDS_OF = f"SELECT {select_list(RefundRow)} FROM refunds WHERE order_id = {{}} ORDER BY created_at, id"
_PENDING = (
    f"SELECT {select_list(RefundRow)} FROM refunds WHERE status = 'pending' AND created_at > {{}}"
    " AND updated_at < {} ORDER BY created_at, id LIMIT {}"
)
_COUNT_PENDING = "SELECT count(*) AS n FROM refunds WHERE status = 'pending' AND created_at <= {}"
_SAVE_REFUND = "UPDATE refunds SET status = {}, provider_refund_id = {}, updated_at = {} WHERE id = {}"


def refund_from_row(row: Mapping[str, Any]) -> Refund:
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return Refund(
        id=str(row["id"]),
        order_id=str(row["order_id"]),
        amount=Money(row["amount_cents"], row["currency"]),
        status=RefundStatus(row["status"]),
        reason=RefundReason(row["reason"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        actor_id=text(row["actor_id"]),
        provider_refund_id=row["provider_refund_id"],
        idempotency_scope=text(row["idempotency_scope"]),
        idempotency_key=row["idempotency_key"],
    )


class SqlRefundRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_order(self, order_id: str) -> Sequence[Refund]:
        canonical = parse_id(order_id)
        if canonical is None:
            return []
        return [refund_from_row(row) for row in await self._db.fetch(_REFUNDS_OF, canonical)]

    async def add(self, refund: Refund) -> None:
        values = {
            "id": refund.id,
            "order_id": refund.order_id,
            "amount_cents": refund.amount.cents,
            "currency": refund.amount.currency,
            "status": refund.status.value,
            "reason": refund.reason.value,
            "idempotency_scope": refund.idempotency_scope,
            "idempotency_key": refund.idempotency_key,
            "provider_refund_id": refund.provider_refund_id,
            "actor_id": refund.actor_id,
            "created_at": refund.created_at,
            "updated_at": refund.updated_at,
        }
        await self._db.fetch(_INSERT_REFUND, *row_values(RefundRow, values))

    async def save(self, refund: Refund) -> None:
        await self._db.fetch(
            _SAVE_REFUND, refund.status.value, refund.provider_refund_id, refund.updated_at, refund.id
        )

    async def pending(
        self, created_after: datetime, updated_before: datetime, limit: int
    ) -> Sequence[Refund]:
        rows = await self._db.fetch(_PENDING, created_after, updated_before, limit)
        return [refund_from_row(row) for row in rows]

    async def count_pending(self, created_until: datetime) -> int:
        [row] = await self._db.fetch(_COUNT_PENDING, created_until)
        return int(row["n"])
