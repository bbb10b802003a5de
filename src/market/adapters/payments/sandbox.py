"""The sandbox payment gateway: the embedded default, with test card tokens in the spirit of the big
providers' test modes. Its ledger (`sandbox_charges`) lives in the service's database so that every worker,
and reconciliation after a restart, sees the same provider truth."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Protocol

import httpx

from market.application.ports import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from market.domain.orders import PaymentGatewayUnavailable

from . import signature

log = logging.getLogger(__name__)

# token -> (what the sandbox records as the truth, what the charge call answers, decline reason)
TEST_TOKENS: dict[str, tuple[str, str, str | None]] = {
    "tok_visa": ("succeeded", "succeeded", None),
    "tok_mastercard": ("succeeded", "succeeded", None),
    "tok_chargeDeclined": ("declined", "declined", "card_declined"),
    "tok_insufficientFunds": ("declined", "declined", "insufficient_funds"),
    "tok_processing": ("succeeded", "processing", None),  # confirmed later by a signed webhook
    "tok_gatewayTimeout": ("succeeded", "timeout", None),  # charged, but the answer never arrives
}
UNKNOWN_TOKEN = ("declined", "declined", "invalid_card_token")
DELIVERY_DELAYS_S = (0.2, 0.5, 1, 2, 4, 8)


class SandboxLedger(Protocol):
    """The sandbox's record of its charges (the provider's truth): the `sandbox_charges` table of the service's
    database (`market.adapters.db.sandbox.SqlSandboxLedger`, bound by bootstrap)."""

    async def record(
        self, charge_id: str, request: ChargeRequest, status: str, reason: str | None, at: datetime
    ) -> ChargeResult | None:
        """Record a charge, unless the order already has one (the provider deduplicates per order): then
        nothing is recorded and that charge is returned; None when this one was recorded."""
        ...

    async def find(self, order_id: str) -> ChargeResult | None:
        """The order's charge as recorded, or None."""
        ...

    async def record_refund(
        self, provider_refund_id: str, request: RefundRequest, at: datetime
    ) -> RefundResult:
        """Refund part of the order's succeeded charge, once per `request.refund_id` (a repeat answers as the
        first did); declined when there is no such charge or the refunds would exceed it."""
        ...


class SandboxPaymentGateway:
    name = "sandbox"

    def __init__(self, ledger: SandboxLedger, *, webhook_url: str, webhook_secret: str) -> None:
        self._ledger = ledger
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._deliveries: set[asyncio.Task[None]] = set()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        truth, answer, reason = TEST_TOKENS.get(request.token, UNKNOWN_TOKEN)
        charge_id = "ch_sandbox_" + secrets.token_hex(12)
        existing = await self._ledger.record(charge_id, request, truth, reason, datetime.now(UTC))
        if existing is not None:  # the provider deduplicates: one charge per order, answered as recorded
            return existing
        if answer == "timeout":
            raise PaymentGatewayUnavailable(request.order_id)
        if answer == "processing":
            self._deliver_later(
                {
                    "id": "evt_" + secrets.token_hex(12),
                    "type": "payment.succeeded",
                    "created": int(time.time()),
                    "data": {
                        "payment_id": charge_id,
                        "order_id": request.order_id,
                        "amount_cents": request.amount.cents,
                        "currency": request.amount.currency,
                    },
                }
            )
        return ChargeResult(answer, charge_id, reason)

    async def lookup(self, order_id: str, payment_id: str) -> ChargeResult | None:
        return await self._ledger.find(order_id)

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refunds at once, then tells the service by a signed `payment.refunded` event, as providers do (the
        service recognises its own refund in it and applies it once)."""
        result = await self._ledger.record_refund(
            "re_sandbox_" + secrets.token_hex(12), request, datetime.now(UTC)
        )
        if result.status == "succeeded":
            self._deliver_later(
                {
                    "id": "evt_" + secrets.token_hex(12),
                    "type": "payment.refunded",
                    "created": int(time.time()),
                    "data": {
                        "payment_id": request.provider_payment_id,
                        "order_id": request.order_id,
                        "refund_id": request.refund_id,
                        "provider_refund_id": result.provider_refund_id,
                        "amount_cents": request.amount.cents,
                        "currency": request.amount.currency,
                    },
                }
            )
        return result

    def _deliver_later(self, event: dict[str, object]) -> None:
        task = asyncio.create_task(self._deliver(event))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, event: dict[str, object]) -> None:
        """POST the signed event to the service's own webhook endpoint over real HTTP, retrying with
        backoff. It starts a new trace on purpose: provider events are not part of the checkout's trace."""
        body = json.dumps(event, separators=(",", ":")).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            for delay in DELIVERY_DELAYS_S:
                await asyncio.sleep(delay)
                headers = {
                    "Content-Type": "application/json",
                    "Market-Signature": signature.sign(self._webhook_secret, body),
                }
                try:
                    response = await client.post(self._webhook_url, content=body, headers=headers)
                    if response.status_code < 300:
                        return
                    log.warning("sandbox webhook refused", extra={"status_code": response.status_code})
                except httpx.HTTPError as exc:
                    log.warning("sandbox webhook delivery failed", extra={"error": type(exc).__name__})
        log.error(
            "sandbox webhook undeliverable; reconciliation will settle the order",
            extra={"event": event["id"]},
        )

    async def close(self) -> None:
        """Cancel deliveries still waiting (reconciliation settles their orders)."""
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
