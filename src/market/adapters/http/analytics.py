"""Business reports for admins (`GET /admin/analytics/{report}`) and the seller dashboard
(`GET /seller/dashboard`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from market.application import analytics
from market.application.services import Services
from market.domain import analytics as reports
from market.domain.errors import ValidationFailed
from market.domain.users import Role, User

from .auth import requires
from .openapi import problems

_PERIOD_HELP = (
    "RFC 3339 timestamp with a time zone (`2026-11-28T13:33:41Z`) or a date (`2026-11-28`, its first instant "
    "in UTC). Both ends are included; `to` defaults to now, `from` to 30 days before `to`; at most 366 days."
)
FromParam = Annotated[str | None, Parameter(query="from", description=_PERIOD_HELP, max_length=64)]
ToParam = Annotated[str | None, Parameter(query="to", description=_PERIOD_HELP, max_length=64)]


def period_of(raw_from: str | None, raw_to: str | None, services: Services) -> reports.Period:
    """The period of the query parameters, or a 400 problem naming the bad one."""
    try:
        return reports.parse_period(raw_from, raw_to, services.clock.now())
    except ValidationFailed as exc:
        raise ValidationException(
            "The period is not valid.",
            extra=[{"key": e.field, "message": e.message, "source": "query"} for e in exc.errors],
        ) from None


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class QueryCountOut(msgspec.Struct):
    query: str
    count: int


class FunnelStepOut(msgspec.Struct):
    name: Literal["browsed", "carted", "checkout_started", "paid"]
    sessions: int
    conversion: float
    """Share of the previous step's sessions (the first step: 1 when it has any)."""


class FunnelOut(msgspec.Struct):
    """Sessions (distinct `X-Session-Id`s) at each step; each step counts only sessions that reached every
    step before it: browsed (viewed an item or searched), carted, started a checkout, paid."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    steps: list[FunnelStepOut]
    overall_conversion: float


class SearchOut(msgspec.Struct):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    searches: int
    no_results: int
    no_results_rate: float
    success_rate: float
    """Share of searches followed, in the same session within 30 minutes, by an item view or a cart add."""
    top_queries: list[QueryCountOut]
    top_no_result_queries: list[QueryCountOut]


class MethodOut(msgspec.Struct):
    method: str
    attempts: int
    success_rate: float


class AmountOut(msgspec.Struct):
    currency: str
    count: int
    sum_cents: int
    mean_cents: int
    p50_cents: int
    p95_cents: int


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
    by_method: list[MethodOut]
    amounts: list[AmountOut]


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


def report_out(report: reports.Report) -> ReportOut:
    """The JSON shape of a report (the API's and `market report --json`'s)."""
    period = {"from_": _second(report.start), "to": _second(report.end)}
    match report:
        case reports.FunnelReport():
            return FunnelOut(
                **period,
                steps=[FunnelStepOut(s.name, s.sessions, s.conversion) for s in report.steps],  # type: ignore[arg-type]
                overall_conversion=report.overall_conversion,
            )
        case reports.SearchReport():
            return SearchOut(
                **period,
                searches=report.searches,
                no_results=report.no_results,
                no_results_rate=report.no_results_rate,
                success_rate=report.success_rate,
                top_queries=[QueryCountOut(q.query, q.count) for q in report.top_queries],
                top_no_result_queries=[QueryCountOut(q.query, q.count) for q in report.top_no_result_queries],
            )
        case reports.PaymentsReport():
            return PaymentsOut(
                **period,
                attempts=report.attempts,
                succeeded=report.succeeded,
                declined=report.declined,
                errored=report.errored,
                success_rate=report.success_rate,
                by_method=[MethodOut(m.method, m.attempts, m.success_rate) for m in report.by_method],
                amounts=[
                    AmountOut(a.currency, a.count, a.sum_cents, a.mean_cents, a.p50_cents, a.p95_cents)
                    for a in report.amounts
                ],
            )
        case reports.CartsReport():
            return CartsOut(
                **period,
                carts_with_items=report.carts_with_items,
                checked_out=report.checked_out,
                abandoned=report.abandoned,
                abandonment_rate=report.abandonment_rate,
                abandon_after_s=report.abandon_after_s,
            )
        case reports.SessionsReport():
            return SessionsOut(
                **period,
                sessions=report.sessions,
                median_duration_s=report.median_duration_s,
                p95_duration_s=report.p95_duration_s,
                events_per_session=report.events_per_session,
            )
    raise TypeError(f"not a report: {report!r}")


class AnalyticsController(Controller):
    path = "/admin/analytics"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]

    @get("/{report:str}", operation_id="analyticsReport", responses=problems(400, 401, 403, 404))
    async def report(
        self,
        services: Services,
        report: Annotated[
            Literal["funnel", "search", "payments", "carts", "sessions"],
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
        period = period_of(from_, to, services)
        result = await analytics.run_report(
            report,
            period,
            reports=services.reports,
            clock=services.clock,
            abandon_after=services.cart_abandon_after,
        )
        return report_out(result)


class RevenueOut(msgspec.Struct):
    currency: str
    revenue_cents: int
    orders: int
    units: int


class SellerItemOut(msgspec.Struct):
    item_id: str
    title: str
    currency: str
    units: int
    revenue_cents: int
    views: int
    conversion: float
    """Share of the sessions that viewed the item which then paid for an order holding it."""


class SellerDashboardOut(msgspec.Struct):
    """The seller's own paid orders (revenue per currency: sums across currencies are refused) and the views
    of their own items; nobody else's."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    revenue: list[RevenueOut]
    orders: int
    units: int
    views: int
    conversion: float
    """Share of the sessions that viewed one of the seller's items which then paid for an order holding one."""
    top_items: list[SellerItemOut]


def dashboard_out(board: reports.SellerDashboard) -> SellerDashboardOut:
    return SellerDashboardOut(
        from_=_second(board.start),
        to=_second(board.end),
        revenue=[RevenueOut(r.currency, r.revenue_cents, r.orders, r.units) for r in board.revenue],
        orders=board.orders,
        units=board.units,
        views=board.views,
        conversion=board.conversion,
        top_items=[
            SellerItemOut(i.item_id, i.title, i.currency, i.units, i.revenue_cents, i.views, i.conversion)
            for i in board.top_items
        ],
    )


class SellerDashboardController(Controller):
    path = "/seller/dashboard"
    tags = ["seller"]
    guards = [requires(Role.SELLER)]

    @get(operation_id="sellerDashboard", responses=problems(400, 401, 403))
    async def dashboard(
        self, services: Services, user: User, from_: FromParam = None, to: ToParam = None
    ) -> SellerDashboardOut:
        """The signed-in seller's sales over a period: revenue per currency, orders, units, top items, and
        the views and conversion of their own items."""
        period = period_of(from_, to, services)
        return dashboard_out(await analytics.seller_dashboard(user, period, reports=services.reports))
