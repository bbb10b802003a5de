"""Business gauges for Prometheus and Grafana: the funnel, cart abandonment, search success and session durations of the last
24 hours, from the same analytics reports the admins read, so dashboards and reports agree. Counters of the
individual events (views, cart changes, checkouts, payments) are recorded as they happen (events.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from market.application.analytics import RunReport
from market.domain.analytics import (
    CartsReport,
    FunnelReport,
    Period,
    ReportName,
    SearchReport,
    SessionsReport,
)
from market.telemetry import names
from market.telemetry.metrics import Instruments

WINDOW = timedelta(hours=24)
REFRESH_INTERVAL_S = 60.0

log = logging.getLogger(__name__)


async def refresh_business_gauges(
    run_report: RunReport, now: Callable[[], datetime], instruments: Instruments
) -> None:
    """Set the gauges from the reports of the last 24 hours (`run_report`: the bound use case)."""
    end = now()
    period = Period(end - WINDOW, end)

    async def report(name: str) -> object:
        return await run_report(name, period)

    funnel = await report(ReportName.FUNNEL)
    assert isinstance(funnel, FunnelReport)
    for step in funnel.steps:
        instruments.funnel_sessions.set(step.sessions, {names.FUNNEL_STEP: step.name})
    carts = await report(ReportName.CARTS)
    assert isinstance(carts, CartsReport)
    instruments.cart_abandonment_rate.set(carts.abandonment_rate)
    search = await report(ReportName.SEARCH)
    assert isinstance(search, SearchReport)
    instruments.search_success_rate.set(search.success_rate)
    sessions = await report(ReportName.SESSIONS)
    assert isinstance(sessions, SessionsReport)
    instruments.session_duration.set(sessions.median_duration_s, {names.STATISTIC: "median"})
    instruments.session_duration.set(sessions.p95_duration_s, {names.STATISTIC: "p95"})


async def refresh_business_gauges_forever(
    run_report: RunReport,
    now: Callable[[], datetime],
    instruments: Instruments,
    interval_s: float = REFRESH_INTERVAL_S,
) -> None:
    while True:
        try:
            await refresh_business_gauges(run_report, now, instruments)
        except Exception:
            log.exception("could not refresh the business gauges; will retry")
        await asyncio.sleep(interval_s)
