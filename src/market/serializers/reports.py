"""The JSON shapes of the business reports: the API's (`GET /admin/analytics/{report}`, `GET /seller/dashboard`),
`market report --json`'s and the admin dashboard's. Shared by every entrypoint, so none of them imports another
to shape its output."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from market.domain import analytics as reports

T = TypeVar("T")


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


# Amounts travel as `Money` up to here; on the wire they are flat `*_cents` integers beside one `currency`.
# These structs keep the domain's names, which are the OpenAPI schema's component names.


class AmountStats(msgspec.Struct):
    currency: str
    count: int
    sum_cents: int
    mean_cents: int
    p50_cents: int
    p95_cents: int

    @classmethod
    def of(cls, a: reports.AmountStats) -> AmountStats:
        return cls(a.currency, a.count, a.sum.cents, a.mean.cents, a.p50.cents, a.p95.cents)


class RefundTotals(msgspec.Struct):
    currency: str
    refunds: int
    refunded_cents: int
    net_cents: int

    @classmethod
    def of(cls, r: reports.RefundTotals) -> RefundTotals:
        return cls(r.currency, r.refunds, r.refunded.cents, r.net.cents)


class Revenue(msgspec.Struct):
    currency: str
    revenue_cents: int
    orders: int
    units: int
    refunded_cents: int = 0
    net_revenue_cents: int = 0

    @classmethod
    def of(cls, r: reports.Revenue) -> Revenue:
        return cls(r.currency, r.revenue.cents, r.orders, r.units, r.refunded.cents, r.net_revenue.cents)


class SellerItemStats(msgspec.Struct):
    item_id: str
    title: str
    currency: str
    units: int
    revenue_cents: int
    views: int
    conversion: float
    """Share of the sessions that viewed the item which then paid for an order holding it."""

    @classmethod
    def of(cls, s: reports.SellerItemStats) -> SellerItemStats:
        return cls(s.item_id, s.title, s.currency, s.units, s.revenue.cents, s.views, s.conversion)


_FLAT: dict[type, Any] = {
    reports.AmountStats: AmountStats.of,
    reports.RefundTotals: RefundTotals.of,
    reports.Revenue: Revenue.of,
    reports.SellerItemStats: SellerItemStats.of,
}
"""The figures holding `Money`, each with its flat shape."""


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
    """Charge attempts by their final known outcome (`errored`: the provider could not be reached, and
    reconciliation has not found the charge taken; once it has, the attempt counts as `succeeded`); `amounts`
    are over succeeded payments, per currency: every order paid, including those that reconciliation found
    charged after a call that timed out."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    attempts: int
    succeeded: int
    declined: int
    errored: int
    success_rate: float
    by_method: list[reports.MethodStats]
    amounts: list[AmountStats]
    refunds: list[RefundTotals]
    """Refunds that went through during the period, per currency, and `net_cents`: `amounts`' sum less them."""


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


def _flat(value: Any) -> Any:
    flat = _FLAT.get(type(value))
    return flat(value) if flat else value


def _shaped(figures: Any, shape: type[T]) -> T:
    """A report's JSON shape: its own fields, with its period as `from`/`to` to the second and its amounts
    flat."""
    values = {
        f.name: [_flat(v) for v in value] if isinstance(value := getattr(figures, f.name), tuple) else value
        for f in dataclasses.fields(figures)
        if f.name not in ("start", "end")
    }
    return shape(from_=_second(figures.start), to=_second(figures.end), **values)


def report_out(report: reports.Report) -> ReportOut:
    """The JSON of a report (the API's and `market report --json`'s)."""
    return _shaped(report, _SHAPES[type(report)])


class SellerDashboardOut(msgspec.Struct):
    """The seller's own paid orders, refunded since or not (revenue per currency, gross and net of refunds:
    sums across currencies are refused) and the views of their own items; nobody else's."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    revenue: list[Revenue]
    orders: int
    units: int
    views: int
    conversion: float
    """Share of the sessions that viewed one of the seller's items which then paid for an order holding one."""
    top_items: list[SellerItemStats]
    refunds: int
    """Refunds that went through on these orders; each `revenue` entry has `refunded_cents` (the seller's share
    of them) and `net_revenue_cents`."""


def dashboard_out(board: reports.SellerDashboard) -> SellerDashboardOut:
    return _shaped(board, SellerDashboardOut)
