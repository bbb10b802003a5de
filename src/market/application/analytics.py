"""Business reports over the analytics events, the seller dashboard, and retention."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from market.domain.analytics import (
    PaymentsOnDay,
    Period,
    Report,
    ReportName,
    SellerDashboard,
    report_names_in_words,
)
from market.domain.errors import NotFound
from market.domain.users import User

from .ports import AnalyticsReports, Clock


async def run_report(
    name: str, period: Period, *, reports: AnalyticsReports, clock: Clock, abandon_after: timedelta
) -> Report:
    """One of the named reports (domain.analytics.ReportName); NotFound for another name."""
    match name:
        case ReportName.FUNNEL:
            return await reports.funnel(period)
        case ReportName.SEARCH:
            return await reports.search(period)
        case ReportName.PAYMENTS:
            return await reports.payments(period)
        case ReportName.CARTS:
            return await reports.carts(period, abandon_after, clock.now())
        case ReportName.SESSIONS:
            return await reports.sessions(period)
    raise NotFound(f"There is no report named {name!r}: try {report_names_in_words()}.")


async def payments_by_day(period: Period, *, reports: AnalyticsReports) -> Sequence[PaymentsOnDay]:
    return await reports.payments_by_day(period)


async def seller_dashboard(seller: User, period: Period, *, reports: AnalyticsReports) -> SellerDashboard:
    """The seller's own figures only: the query is keyed by their id, never by a client-given one."""
    return await reports.seller_dashboard(seller.id, period)


async def prune_events(retention: timedelta, *, reports: AnalyticsReports, clock: Clock) -> int:
    """Forget events older than the retention period; returns how many were deleted."""
    return await reports.prune(clock.now() - retention)


async def roll_up_events(retention: timedelta, *, reports: AnalyticsReports, clock: Clock) -> int:
    """One bounded pass of the reports' rollups (closed days, and days that received late events), none for
    the day the retention's cut-off falls in (pruned a little more at every pass)."""
    now = clock.now()
    return await reports.roll_up(now, kept_from=now - retention)


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

RunReport = Callable[[str, Period], Awaitable[Report]]
"""(report name, period)"""
SellerDashboardOf = Callable[[User, Period], Awaitable[SellerDashboard]]
