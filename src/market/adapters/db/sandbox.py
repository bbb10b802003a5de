"""The sandbox payment gateway's ledger (`sandbox_charges`): kept in the service's database so that every
worker, and reconciliation after a restart, sees the same provider truth."""

from __future__ import annotations

from datetime import datetime

from market.application.ports import ChargeRequest, ChargeResult, RefundRequest, RefundResult

from .database import Database


class SqlSandboxLedger:
    """`market.adapters.payments.sandbox.SandboxLedger` over the `sandbox_charges` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, charge_id: str, request: ChargeRequest, status: str, reason: str | None, at: datetime
    ) -> ChargeResult | None:
        inserted = await self._db.fetch(
            "INSERT INTO sandbox_charges (id, order_id, status, method, amount_cents, currency, failure_reason,"
            " created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}) ON CONFLICT (order_id) DO NOTHING RETURNING id",
            charge_id,
            request.order_id,
            status,
            request.method,
            request.amount.cents,
            request.amount.currency,
            reason,
            at,
        )
        return None if inserted else await self.find(request.order_id)

    async def find(self, order_id: str) -> ChargeResult | None:
        rows = await self._db.fetch(
            "SELECT id, status, failure_reason FROM sandbox_charges WHERE order_id = {}", order_id
        )
        if not rows:
            return None
        return ChargeResult(rows[0]["status"], rows[0]["id"], rows[0]["failure_reason"])

    async def record_refund(
        self, provider_refund_id: str, request: RefundRequest, at: datetime
    ) -> RefundResult:
        done = await self._db.fetch("SELECT id FROM sandbox_refunds WHERE refund_id = {}", request.refund_id)
        if done:
            return RefundResult("succeeded", done[0]["id"])
        charges = await self._db.fetch(
            "SELECT status, amount_cents, currency FROM sandbox_charges WHERE order_id = {}", request.order_id
        )
        if not charges or charges[0]["status"] != "succeeded":
            return RefundResult("declined", None, "charge_not_found")
        if charges[0]["currency"] != request.amount.currency:
            return RefundResult("declined", None, "currency_mismatch")
        refunded = await self._db.fetch(
            "SELECT COALESCE(SUM(amount_cents), 0) AS total FROM sandbox_refunds WHERE order_id = {}",
            request.order_id,
        )
        if int(refunded[0]["total"]) + request.amount.cents > charges[0]["amount_cents"]:
            return RefundResult("declined", None, "amount_exceeds_charge")
        await self._db.fetch(
            "INSERT INTO sandbox_refunds (id, refund_id, order_id, amount_cents, currency, created_at)"
            " VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT (refund_id) DO NOTHING",
            provider_refund_id,
            request.refund_id,
            request.order_id,
            request.amount.cents,
            request.amount.currency,
            at,
        )
        again = await self._db.fetch("SELECT id FROM sandbox_refunds WHERE refund_id = {}", request.refund_id)
        return RefundResult("succeeded", again[0]["id"])
