"""The delivery worker: a background loop in every service process that sends due seller webhooks.

All its state is in the database (the outbox rows and their leases), so any number of processes may run it and
a restart loses nothing: a row claimed by a process that died is taken again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from market.application.ports import Clock
from market.application.seller_webhooks import (
    DeliveryReport,
    WebhookDeliveryRepository,
    WebhookSender,
    deliver_due_webhooks,
)
from market.background import cancel_and_wait
from market.domain.webhooks import DeliveryStatus

from .sender import ATTEMPT_TIMEOUT_S

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
BATCH_SIZE = 10
MAX_PASSES = 4
"""Passes in flight at once. A pass ends when its slowest attempt does (up to the sender's timeout, against a
receiver that hangs), so the next pass starts on its poll interval all the same: deliveries that fall due
meanwhile, other sellers' included, do not wait behind one slow endpoint."""
# Every claimed row of a batch is attempted at once, so one attempt's timeout bounds a batch; the rest is
# room to record the outcomes.
LEASE = timedelta(seconds=6 * ATTEMPT_TIMEOUT_S)
ERROR_BACKOFF_S = 5.0


class WebhookDeliveryWorker:
    def __init__(
        self,
        deliveries: WebhookDeliveryRepository,
        sender: WebhookSender,
        clock: Clock,
        retry_schedule_s: Sequence[int],
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        batch_size: int = BATCH_SIZE,
        lease: timedelta = LEASE,
        max_passes: int = MAX_PASSES,
    ) -> None:
        self._deliveries = deliveries
        self._sender = sender
        self._clock = clock
        self._schedule = tuple(retry_schedule_s)
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._lease = lease
        self._max_passes = max_passes
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[DeliveryReport]:
        """One pass: claim due deliveries, attempt them, record and log the outcomes."""
        reports = await deliver_due_webhooks(
            deliveries=self._deliveries,
            sender=self._sender,
            clock=self._clock,
            retry_schedule_s=self._schedule,
            batch_size=self._batch_size,
            lease=self._lease,
        )
        for report in reports:
            _log_verdict(report)
        return reports

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="webhook-delivery-worker")

    async def stop(self, grace_s: float = 3.0) -> None:
        """Claim nothing more; let the attempts in flight finish for up to `grace_s`, then cancel them (their
        rows are attempted again once the lease runs out)."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            await cancel_and_wait([task])

    async def _run(self) -> None:
        """A pass every poll interval (at once after a full batch: more may be due), up to `max_passes` in
        flight; on stop, the passes in flight are awaited (stop() bounds the wait)."""
        loop = asyncio.get_running_loop()
        passes: set[asyncio.Task[_Outcome]] = set()
        stopping = asyncio.ensure_future(self._stopping.wait())
        next_pass_at = loop.time()
        try:
            while not self._stopping.is_set():
                if len(passes) < self._max_passes and loop.time() >= next_pass_at:
                    passes.add(asyncio.create_task(self._pass(), name="webhook-delivery-pass"))
                    next_pass_at = loop.time() + self._poll_interval_s
                timeout = None if len(passes) >= self._max_passes else max(0.0, next_pass_at - loop.time())
                done, _ = await asyncio.wait(
                    {stopping, *passes}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done - {stopping}:
                    passes.discard(finished)
                    if finished.result() == "full":  # more may be due
                        next_pass_at = loop.time()
                    elif finished.result() == "failed":
                        next_pass_at = max(next_pass_at, loop.time() + ERROR_BACKOFF_S)
        except asyncio.CancelledError:  # stop()'s grace ran out: the rows in flight are taken again later
            for running in passes:
                running.cancel()
            raise
        finally:
            stopping.cancel()
        if passes:  # stopping: the attempts in flight finish (cancelled with this task past stop()'s grace)
            await asyncio.gather(*passes, return_exceptions=True)

    async def _pass(self) -> _Outcome:
        try:
            reports = await self.run_once()
        except Exception:
            log.exception("webhook delivery pass failed; will retry")
            return "failed"
        return "full" if len(reports) == self._batch_size else "done"


_Outcome = Literal["full", "done", "failed"]


def _log_verdict(report: DeliveryReport) -> None:
    """What the attempt (logged by the sender, in its span) means for the delivery."""
    verdict, delivery = report.verdict, report.delivery
    fields = {
        "webhook_delivery_id": delivery.id,
        "seller_id": delivery.seller_id,
        "event_type": delivery.event_type,
        "attempts": delivery.attempts + (report.result is not None),
        "status": verdict.status.value,
    }
    if verdict.status is DeliveryStatus.PENDING and verdict.next_attempt_at is not None:
        log.info(
            "webhook delivery will be retried",
            extra={**fields, "next_attempt_at": verdict.next_attempt_at.isoformat()},
        )
    elif verdict.status is DeliveryStatus.FAILED:
        log.warning("webhook delivery failed: no retries left", extra=fields)
    elif verdict.disable_endpoint:
        log.warning("webhook endpoint disabled: it answered 410 Gone", extra=fields)
    elif verdict.status is DeliveryStatus.DISABLED:
        log.info("webhook delivery stopped: the seller's endpoint is disabled", extra=fields)
