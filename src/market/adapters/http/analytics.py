"""Business reports for admins (`GET /admin/analytics/{report}`) and the seller dashboard
(`GET /seller/dashboard`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import PathParameter, QueryParameter

from market.application.analytics import RunReport, SellerDashboardOf
from market.domain import analytics as reports
from market.domain.errors import ValidationFailed
from market.domain.users import Role, User
from market.serializers.reports import ReportOut, SellerDashboardOut, dashboard_out, report_out

from .auth import requires
from .openapi import problems
from .query import strict_request

REPORT_NAMES = {"enum": [name.value for name in reports.ReportName]}
"""The schema lists the names as an inline enum of strings. The parameter itself takes any text: a report is a
resource, and one that does not exist is a 404 (the use case's NotFound), not a malformed request."""

_PERIOD_HELP = (
    "RFC 3339 timestamp with a time zone (`2026-11-28T13:33:41Z`) or a date (`2026-11-28`, its first instant "
    "in UTC). Both ends are included; `to` defaults to now, `from` to 30 days before `to`; at most 366 days, "
    "from 1970-01-01T00:00:00Z and before 9999-01-01T00:00:00Z."
)
FromParam = Annotated[str | None, QueryParameter(name="from", description=_PERIOD_HELP, max_length=64)]
ToParam = Annotated[str | None, QueryParameter(name="to", description=_PERIOD_HELP, max_length=64)]


def period_of(raw_from: str | None, raw_to: str | None, now: datetime) -> reports.Period:
    """The period of the query parameters, or a 400 problem naming the bad one."""
    try:
        return reports.parse_period(raw_from, raw_to, now)
    except ValidationFailed as exc:
        raise ValidationException(
            "The period is not valid.",
            extra=[{"key": e.field, "message": e.message, "source": "query"} for e in exc.errors],
        ) from None


class AnalyticsController(Controller):
    path = "/admin/analytics"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    before_request = (
        strict_request  # as every admin tool: a misspelt `from` must not answer the default period
    )

    @get("/{report:str}", operation_id="analyticsReport", responses=problems(400, 401, 403, 404))
    async def report(
        self,
        run_report: NamedDependency[RunReport],
        now: NamedDependency[Callable[[], datetime]],
        report: Annotated[
            str,
            PathParameter(description="Which report (another name → 404).", schema_extra=REPORT_NAMES),
        ],
        from_: FromParam = None,
        to: ToParam = None,
    ) -> ReportOut:
        """A business report over a period, from the analytics events (the same events the metrics count):

        - `funnel`: sessions that browsed → carted → started checkout → paid, with conversions;
        - `search`: searches, share without results, success rate, top queries and top no-result queries;
        - `payments`: attempts by outcome and method, amounts per currency (sum, mean, p50, p95);
        - `carts`: carts with items, checked out, abandoned (`MARKET_CART_ABANDON_AFTER`, default 24 h);
        - `sessions`: count, median and p95 duration, events per session.

        Rates are fractions in [0, 1]; an empty period gives zeros. A query parameter other than `from` and
        `to`, or either given twice, is a 400 `invalid-parameter` naming it."""
        return report_out(await run_report(report, period_of(from_, to, now())))


class SellerDashboardController(Controller):
    path = "/seller/dashboard"
    tags = ["seller"]
    guards = [requires(Role.SELLER)]
    before_request = (
        strict_request  # as the seller's lists: a misspelt `from` must not answer the default period
    )

    @get(operation_id="sellerDashboard", responses=problems(400, 401, 403))
    async def dashboard(
        self,
        seller_dashboard: NamedDependency[SellerDashboardOf],
        now: NamedDependency[Callable[[], datetime]],
        user: NamedDependency[User],
        from_: FromParam = None,
        to: ToParam = None,
    ) -> SellerDashboardOut:
        """The signed-in seller's sales over a period: revenue per currency, orders, units, top items, and
        the views and conversion of their own items. A query parameter other than `from` and `to`, or either
        given twice, is a 400 `invalid-parameter` naming it."""
        return dashboard_out(await seller_dashboard(user, period_of(from_, to, now())))
