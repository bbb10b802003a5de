"""How long the admin dashboard page takes to render, without the database: payment attempts on every day of
the period (30 days, the default period, and 365, the widest chart), ten no-result queries and five alert rules,
through the engine the app uses.

    .venv/bin/python benchmarks/dashboard_render.py [--renders N]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta

from market.adapters.http.templating import template_engine
from market.domain.analytics import AmountStats, FunnelStep, PaymentsOnDay, QueryCount
from market.ops.alerting.rules import AlertStatus
from market.ops.dashboard import Figures, PeriodForm, dashboard_context
from market.serializers.reports import CartsOut, FunnelOut, PaymentsOut, SearchOut, SessionsOut


def figures(days: int) -> Figures:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=days) - timedelta(seconds=1)
    span = {"from_": start, "to": end}
    steps = [
        FunnelStep(name, sessions, conversion)
        for name, sessions, conversion in [
            ("browsed", 120_000, 1.0),
            ("carted", 30_000, 0.25),
            ("checkout_started", 12_000, 0.4),
            ("paid", 9_000, 0.75),
        ]
    ]
    by_day = [
        PaymentsOnDay((date(2026, 1, 1) + timedelta(days=n)).isoformat(), 20 + n % 17, n % 5)
        for n in range(days)
    ]
    queries = [QueryCount(f'<query {n}> & "more"', 100 - n) for n in range(10)]
    return Figures(
        funnel=FunnelOut(**span, steps=steps, overall_conversion=0.075),
        search=SearchOut(
            **span,
            searches=50_000,
            no_results=4_000,
            no_results_rate=0.08,
            success_rate=0.6,
            top_queries=queries,
            top_no_result_queries=queries,
        ),
        payments=PaymentsOut(
            **span,
            attempts=12_000,
            succeeded=9_000,
            declined=2_500,
            errored=500,
            success_rate=0.75,
            by_method=[],
            amounts=[AmountStats("EUR", 9_000, 45_000_000, 5_000, 4_200, 12_000)],
        ),
        carts=CartsOut(
            **span,
            carts_with_items=30_000,
            checked_out=12_000,
            abandoned=15_000,
            abandonment_rate=0.5,
            abandon_after_s=86_400,
        ),
        sessions=SessionsOut(
            **span, sessions=140_000, median_duration_s=95.0, p95_duration_s=1_900.0, events_per_session=6.2
        ),
        payments_by_day=by_day,
    )


def render_time(days: int, renders: int) -> tuple[float, int]:
    """Seconds per render (context and template) and the page's size in bytes."""
    shown = figures(days)
    alerts = [
        AlertStatus(f"rule_{n}", "critical", "ok", 0.01, 0.05, None, "ratio", "A rule.") for n in range(5)
    ]
    form = PeriodForm("", "", "", "")
    template = template_engine().get_template("dashboard.html")

    def render() -> str:
        context = dashboard_context(
            email="ops@example.com",
            csrf_token="0" * 64,
            form=form,
            figures=shown,
            alerts=alerts,
            alerts_evaluated_at=datetime.now(UTC),
        )
        return template.render(context)

    page = render()  # warm-up, and the size
    began = time.perf_counter()
    for _ in range(renders):
        render()
    return (time.perf_counter() - began) / renders, len(page.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=200)
    args = parser.parse_args()
    for days in (30, 365):
        seconds, size = render_time(days, args.renders)
        print(
            f"dashboard.html, {days:>3} days with payments: {seconds * 1e3:6.2f} ms per render, "
            f"{size / 1024:.0f} KiB ({args.renders} renders)"
        )


if __name__ == "__main__":
    main()
