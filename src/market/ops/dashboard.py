"""What the admin dashboard's templates show: the reports over a period in the API's own shapes, the words
for each monitoring kind, and the charts' geometry as plain numbers. The markup is in the templates
(dashboard.html and macros/charts.html), rendered with autoescaping by the engine of
market.adapters.http.templating.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from market.application import analytics
from market.application.ports import AnalyticsReports, Clock
from market.domain.analytics import PaymentsOnDay, Period, ReportName
from market.ops.alerting.rules import AlertStatus
from market.ops.selftest import MONITORING_KINDS
from market.serializers.reports import CartsOut, FunnelOut, PaymentsOut, SearchOut, SessionsOut, report_out

STEP_LABELS = {
    "browsed": "Browsed",
    "carted": "Added to cart",
    "checkout_started": "Started checkout",
    "paid": "Paid",
}

KIND_LABELS = {
    "error": "Unhandled error",
    "slow": "Slow span",
    "payment_failure": "Payment failure",
    "message": "Sentry message",
}

PRODUCED = {
    "error": "Raised a MonitoringTestError and reported it as an unexpected error: an ERROR server span with "
    "an exception event, an error log line and a Sentry event. This page is answered with status 500 "
    "so the error-rate metric counts it, as for the API.",
    "slow": "Made a span “monitoring.slow” of at least 2.5 s inside this request's trace.",
    "payment_failure": "Declined a 1.00 EUR test charge (tok_chargeDeclined) through the sandbox "
    "gateway: a declined payment attempt in the metrics and the payments report (declines never fire the "
    "payment_failures alert, which counts failures of the payment system).",
    "message": "Sent an info-level Sentry message.",
}
"""What each monitoring button did, in the words the page shows after it was pressed."""


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the dashboard shows for one period, in the API's own shapes."""

    funnel: FunnelOut
    search: SearchOut
    payments: PaymentsOut
    carts: CartsOut
    sessions: SessionsOut
    payments_by_day: Sequence[PaymentsOnDay]


@dataclass(frozen=True, slots=True)
class MonitoringResult:
    kind: str
    trace_id: str
    sentry_event_id: str | None
    error: str | None = None
    """Set when the request was refused (an unknown kind): what went wrong, in plain words."""


@dataclass(frozen=True, slots=True)
class PeriodForm:
    """What the period form shows and what the monitoring forms send back."""

    raw_from: str
    raw_to: str
    shown_from: str
    """yyyy-mm-dd for the date input (empty when the typed value is not a date)."""
    shown_to: str
    errors: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class FunnelRow:
    """One step of the funnel table; `share` (0 to 100) is its bar's length, relative to the largest step."""

    name: str
    label: str
    sessions: int
    conversion: float
    share: float


@dataclass(frozen=True, slots=True)
class ChartBar:
    """One day's stacked bar, in the chart's viewBox units."""

    day: str
    succeeded: int
    failed: int
    x: float
    width: float
    succeeded_y: float
    succeeded_height: float
    failed_y: float
    failed_height: float


@dataclass(frozen=True, slots=True)
class PaymentsChart:
    """The payments-per-day chart: a `width` × `height` viewBox whose plot runs from `top` down to `axis_y`;
    `bars` holds only the days with attempts, in order."""

    width: int
    height: int
    top: int
    axis_y: float
    peak: int
    first_day: str
    last_day: str
    bars: Sequence[ChartBar]


async def figures(
    period: Period, *, reports: AnalyticsReports, clock: Clock, abandon_after: timedelta
) -> Figures:
    """The five reports (as the API shapes them) and payments per day. One after another: on SQLite the
    reports share one connection anyway, and each is a single query over an indexed range."""
    shaped = {
        name: report_out(
            await analytics.run_report(
                name, period, reports=reports, clock=clock, abandon_after=abandon_after
            )
        )
        for name in ReportName
    }
    return Figures(
        funnel=shaped[ReportName.FUNNEL],  # type: ignore[arg-type]
        search=shaped[ReportName.SEARCH],  # type: ignore[arg-type]
        payments=shaped[ReportName.PAYMENTS],  # type: ignore[arg-type]
        carts=shaped[ReportName.CARTS],  # type: ignore[arg-type]
        sessions=shaped[ReportName.SESSIONS],  # type: ignore[arg-type]
        payments_by_day=await analytics.payments_by_day(period, reports=reports),
    )


DashboardFigures = Callable[[Period], Awaitable[Figures]]
"""`figures` with its ports bound (bootstrap)."""


def funnel_rows(funnel: FunnelOut) -> list[FunnelRow]:
    """The funnel's steps with their labels and bar lengths."""
    top = max((step.sessions for step in funnel.steps), default=0)
    return [
        FunnelRow(
            name=step.name,
            label=STEP_LABELS.get(step.name, step.name),
            sessions=step.sessions,
            conversion=step.conversion,
            share=round(100 * step.sessions / top, 2) if top else 0,
        )
        for step in funnel.steps
    ]


def payments_chart(by_day: Sequence[PaymentsOnDay], start: date, end: date) -> PaymentsChart:
    """Stacked bars per UTC day of the period: succeeded below, failed (declined or errored) above, scaled so
    the busiest day fills the plot."""
    days = [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
    counts = {d.day: d for d in by_day}
    width, height, top, bottom = 420, 130, 12, 16
    plot = height - top - bottom
    axis_y = float(top + plot)
    peak = max((d.succeeded + d.failed for d in by_day), default=0) or 1
    step = width / len(days)
    bar_width = min(max(step * 0.75, 0.5), 24.0)  # thin for a year of days, not a slab for one
    bars = []
    for n, day in enumerate(days):
        entry = counts.get(day)
        if entry is None or entry.succeeded + entry.failed == 0:
            continue
        succeeded_height = plot * entry.succeeded / peak
        failed_height = plot * entry.failed / peak
        bars.append(
            ChartBar(
                day=day,
                succeeded=entry.succeeded,
                failed=entry.failed,
                x=round(n * step + (step - bar_width) / 2, 2),
                width=round(bar_width, 2),
                succeeded_y=round(axis_y - succeeded_height, 2),
                succeeded_height=round(succeeded_height, 2),
                failed_y=round(axis_y - succeeded_height - failed_height, 2),
                failed_height=round(failed_height, 2),
            )
        )
    return PaymentsChart(width, height, top, axis_y, peak, days[0], days[-1], bars)


def dashboard_context(
    *,
    email: str,
    csrf_token: str,
    form: PeriodForm,
    figures: Figures | None,
    alerts: Sequence[AlertStatus] | None,
    alerts_evaluated_at: datetime | None,
    result: MonitoringResult | None = None,
) -> dict[str, Any]:
    """The context of dashboard.html; without `figures` (a bad period) it shows only the form and the error."""
    return {
        "email": email,
        "csrf_token": csrf_token,
        "form": form,
        "figures": figures,
        "funnel_rows": funnel_rows(figures.funnel) if figures else [],
        "chart": (
            payments_chart(figures.payments_by_day, figures.funnel.from_.date(), figures.funnel.to.date())
            if figures
            else None
        ),
        "alerts": alerts,
        "alerts_evaluated_at": alerts_evaluated_at,
        "result": result,
        "kind_labels": {kind: KIND_LABELS[kind] for kind in MONITORING_KINDS},
        "produced": PRODUCED,
    }
