"""The sandbox payment gateway's ledger (`sandbox_charges`): kept in the service's database so that every
worker, and reconciliation after a restart, sees the same provider truth."""

from __future__ import annotations

from datetime import datetime

from market.application.ports import ChargeRequest, ChargeResult

from .database import Database


class SqlSandboxLedger:
    """`market.adapters.payments.sandbox.SandboxLedger` over the `sandbox_charges` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, charge_id: str, request: ChargeRequest, status: str, reason: str | None, at: datetime
    ) -> None:
        await self._db.fetch(
            "INSERT INTO sandbox_charges (id, order_id, status, method, amount_cents, currency, failure_reason,"
            " created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}) ON CONFLICT (order_id) DO NOTHING",
            charge_id,
            request.order_id,
            status,
            request.method,
            request.amount.cents,
            request.amount.currency,
            reason,
            at,
        )

    async def find(self, order_id: str) -> ChargeResult | None:
        rows = await self._db.fetch(
            "SELECT id, status, failure_reason FROM sandbox_charges WHERE order_id = {}", order_id
        )
        if not rows:
            return None
        return ChargeResult(rows[0]["status"], rows[0]["id"], rows[0]["failure_reason"])
