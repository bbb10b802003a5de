"""Business reports for admins (`GET /admin/analytics/{report}`) and the seller dashboard
(`GET /seller/dashboard`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller, get
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from market.application.analytics import RunReport, SellerDashboardOf
from market.domain import analytics as reports
from market.domain.errors import ValidationFailed
from market.domain.users import Role, User

from .auth import requires
from .openapi import problems

# The schema lists the names as an inline enum of strings, as it always has (a StrEnum would add a component).
ReportNameParam = Literal[tuple(name.value for name in reports.ReportName)]  # type: ignore[valid-type]

_PERIOD_HELP = (
    "RFC 3339 timestamp with a time zone (`2026-11-28T13:33:41Z`) or a date (`2026-11-28`, its first instant "
    "in UTC). Both ends are included; `to` defaults to now, `from` to 30 days before `to`; at most 366 days, "
    "from 1970-01-01T00:00:00Z and before 9999-01-01T00:00:00Z."
)
T = TypeVar("T")
FromParam = Annotated[str | None, Parameter(query="from", description=_PERIOD_HELP, max_length=64)]
ToParam = Annotated[str | None, Parameter(query="to", description=_PERIOD_HELP, max_length=64)]


def period_of(raw_from: str | None, raw_to: str | None, now: datetime) -> reports.Period:
    """The period of the query parameters, or a 400 problem naming the bad one."""
    try:
        return reports.parse_period(raw_from, raw_to, now)
    except ValidationFailed as exc:
        raise ValidationException(
            "The period is not valid.",
            extra=[{"key": e.field, "message": e.message, "source": "query"} for e in exc.errors],
        ) from None


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class FunnelOut(msgspec.Struct):
    """Sessions (distinct `X-Session-Id`s) at each step; each step counts only sessions that reached every
    step before it: browsed (viewed an item or searched), carted, started a checkout, paid."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    steps: list[reports.FunnelStep]
    overall_conversion: float


class SearchOut(msgspec.Struct):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    searches: int
    no_results: int
    no_results_rate: float
    success_rate: float
    """Share of searches followed, in the same session within 30 minutes, by an item view or a cart add."""
    top_queries: list[reports.QueryCount]
    top_no_result_queries: list[reports.QueryCount]


class PaymentsOut(msgspec.Struct):
    """Charge attempts by their outcome when made (`errored`: the provider could not be reached); `amounts`
    are over succeeded payments, per currency: every order paid, including those that reconciliation found
    charged after a call that timed out (whose attempt stays `errored`)."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    attempts: int
    succeeded: int
    declined: int
    errored: int
    success_rate: float
    by_method: list[reports.MethodStats]
    amounts: list[reports.AmountStats]


class CartsOut(msgspec.Struct):
    """Buyers who put something in their cart during the period; `checked_out` started a checkout after;
    `abandoned` did not, and `MARKET_CART_ABANDON_AFTER` has passed since their last addition."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    carts_with_items: int
    checked_out: int
    abandoned: int
    abandonment_rate: float
    abandon_after_s: int


class SessionsOut(msgspec.Struct):
    """Durations run from a session's first event in the period to its last."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    sessions: int
    median_duration_s: float
    p95_duration_s: float
    events_per_session: float


ReportOut = FunnelOut | SearchOut | PaymentsOut | CartsOut | SessionsOut


_SHAPES: dict[type, type[ReportOut]] = {
    reports.FunnelReport: FunnelOut,
    reports.SearchReport: SearchOut,
    reports.PaymentsReport: PaymentsOut,
    reports.CartsReport: CartsOut,
    reports.SessionsReport: SessionsOut,
}


def _shaped(figures: Any, shape: type[T]) -> T:
    """A report's JSON shape: its own fields, with its period as `from`/`to` to the second."""
    values = {
        f.name: list(value) if isinstance(value := getattr(figures, f.name), tuple) else value
        for f in dataclasses.fields(figures)
        if f.name not in ("start", "end")
    }
    return shape(from_=_second(figures.start), to=_second(figures.end), **values)


def report_out(report: reports.Report) -> ReportOut:
    """The JSON of a report (the API's and `market report --json`'s)."""
    return _shaped(report, _SHAPES[type(report)])


class AnalyticsController(Controller):
    path = "/admin/analytics"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]

    @get("/{report:str}", operation_id="analyticsReport", responses=problems(400, 401, 403, 404))
    async def report(
        self,
        run_report: RunReport,
        now: Callable[[], datetime],
        report: Annotated[
            ReportNameParam,
            Parameter(description="Which report."),
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

        Rates are fractions in [0, 1]; an empty period gives zeros."""
        return report_out(await run_report(report, period_of(from_, to, now())))


class SellerDashboardOut(msgspec.Struct):
    """The seller's own paid orders (revenue per currency: sums across currencies are refused) and the views
    of their own items; nobody else's."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    revenue: list[reports.Revenue]
    orders: int
    units: int
    views: int
    conversion: float
    """Share of the sessions that viewed one of the seller's items which then paid for an order holding one."""
    top_items: list[reports.SellerItemStats]


def dashboard_out(board: reports.SellerDashboard) -> SellerDashboardOut:
    return _shaped(board, SellerDashboardOut)


class SellerDashboardController(Controller):
    path = "/seller/dashboard"
    tags = ["seller"]
    guards = [requires(Role.SELLER)]

    @get(operation_id="sellerDashboard", responses=problems(400, 401, 403))
    async def dashboard(
        self,
        seller_dashboard: SellerDashboardOf,
        now: Callable[[], datetime],
        user: User,
        from_: FromParam = None,
        to: ToParam = None,
    ) -> SellerDashboardOut:
        """The signed-in seller's sales over a period: revenue per currency, orders, units, top items, and
        the views and conversion of their own items."""
        return dashboard_out(await seller_dashboard(user, period_of(from_, to, now())))
