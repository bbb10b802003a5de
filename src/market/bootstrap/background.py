"""What runs beside the requests in every worker: reconciliation and retention, sharing this worker's
metrics with its siblings, and flushing telemetry at exit."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from market.application.analytics import prune_events, roll_up_events
from market.application.checkout import reconcile_payments
from market.application.refund_settlement import settle_pending_refunds
from market.telemetry.metrics import Instruments
from market.telemetry.sentry import close_sentry
from market.telemetry.setup import Telemetry

from .adapters import Ports

IDEMPOTENCY_RETENTION = timedelta(hours=48)  # the contract promises at least 24 h
METRICS_SHARE_INTERVAL_S = 5.0


log = logging.getLogger(__name__)


async def reconcile_forever(ports: Ports, interval_s: float, instruments: Instruments) -> None:
    """The background reconciler: settles orders whose payment outcome was unknown and refunds left pending
    (and sets `market.refunds.stuck` to those too old to ask about again), forgets idempotency keys and
    analytics events past their retention, and rolls up the analytics of closed days (a bounded pass:
    adapters/db/rollups.py). Safe in every worker at once (settling is idempotent; deleting what is past
    retention twice deletes nothing the second time)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            counts = await reconcile_payments(uow=ports.uow, gateway=ports.gateway, clock=ports.clock)
            if counts["paid"] or counts["payment_failed"]:
                log.info("reconciled payments", extra=counts)
            refunds = await settle_pending_refunds(uow=ports.uow, gateway=ports.gateway, clock=ports.clock)
            if refunds["succeeded"] or refunds["failed"]:
                log.info("settled pending refunds", extra=refunds)
            instruments.refunds_stuck.set(refunds["stuck"])
            await ports.idempotency.purge(ports.clock.now() - IDEMPOTENCY_RETENTION)
            await prune_events(ports.analytics_retention, reports=ports.reports, clock=ports.clock)
            await roll_up_events(ports.analytics_retention, reports=ports.reports, clock=ports.clock)
        except Exception:
            log.exception("reconciliation failed; will retry")


async def shutdown_telemetry(telemetry: Telemetry) -> None:
    """Flush this worker's metrics for its siblings, then the exporters and Sentry."""
    telemetry.exposition.write_snapshot()
    # Side by side: each has its own deadline (3 s, 2 s); one after the other they overran 5 s.
    await asyncio.gather(asyncio.to_thread(telemetry.shutdown), asyncio.to_thread(close_sentry))


async def share_metrics_forever(telemetry: Telemetry, interval_s: float = METRICS_SHARE_INTERVAL_S) -> None:
    """Leave this worker's metrics where sibling workers' /metrics can add them up."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(telemetry.exposition.write_snapshot)
        except OSError:
            log.warning("could not write the metrics snapshot", exc_info=True)
