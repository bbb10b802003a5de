"""Business reports: the period they cover, their shapes, and the arithmetic they share (rates and
percentiles). The numbers come from the analytics events (see events.py); the queries live in adapters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from .money import Money
from .validation import FieldErrors, iso_datetime

_URL_DECODED_OFFSET = re.compile(r"(?<=\d) (\d{2}:\d{2})$")
MAX_PERIOD = timedelta(days=366)
DEFAULT_PERIOD = timedelta(days=30)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The first instant a period may include: no event is older than the Unix epoch."""
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Periods end before this instant, so that the windows reports add after a period's end (at most days)
stay within what a datetime can hold (year 9999)."""
FUNNEL_STEPS = ("browsed", "carted", "checkout_started", "paid")


class ReportName(StrEnum):
    """The business reports, in the order they are listed everywhere (API schema, CLI, dashboard). The one
    list of them: every other list is derived from this enum."""

    FUNNEL = "funnel"
    SEARCH = "search"
    PAYMENTS = "payments"
    CARTS = "carts"
    SESSIONS = "sessions"


def report_names_in_words() -> str:
    """`funnel, search, payments, carts or sessions`, for messages and help texts."""
    *rest, last = ReportName
    return f"{', '.join(rest)} or {last}"


SEARCH_SUCCESS_WINDOW = timedelta(minutes=30)
"""A search succeeded when it had results and the same session then viewed an item or added one to its cart
within this time (docs/MONITORING-SETUP.md, SLI catalogue). A search with no results never succeeded."""
TOP = 10
"""How many entries the top-N lists hold."""


@dataclass(frozen=True, slots=True)
class Period:
    """From `start` to `end`, both included, in UTC."""

    start: datetime
    end: datetime


def parse_period(raw_from: str | None, raw_to: str | None, now: datetime) -> Period:
    """The period of an RFC 3339 `from`/`to` pair. `to` defaults to now, `from` to 30 days before `to` (not
    before EARLIEST). Raises ValidationFailed for unparsable timestamps, timestamps outside
    [EARLIEST, LATEST), `from` after `to` and periods over 366 days."""
    errors = FieldErrors()
    end = _timestamp(raw_to, "to", errors) if raw_to else now
    start = _timestamp(raw_from, "from", errors) if raw_from else None
    errors.raise_if_any()
    assert end is not None
    start = start if start is not None else max(end - DEFAULT_PERIOD, EARLIEST)
    if start > end:
        errors.add("from", "must not be after `to`")
    elif end - start > MAX_PERIOD:
        errors.add("to", "the period may span at most 366 days")
    errors.raise_if_any()
    return Period(start, end)


def parse_bounds(raw_from: str | None, raw_to: str | None) -> tuple[datetime | None, datetime | None]:
    """Optional `from`/`to` bounds of a list filter, read like a period's (RFC 3339 or a date), either end
    open. Raises ValidationFailed naming the bad one, or `from` when it is after `to`."""
    errors = FieldErrors()
    start = _timestamp(raw_from, "from", errors) if raw_from else None
    end = _timestamp(raw_to, "to", errors) if raw_to else None
    errors.raise_if_any()
    if start is not None and end is not None and start > end:
        errors.add("from", "must not be after `to`")
    errors.raise_if_any()
    return start, end


def _timestamp(raw: str, field: str, errors: FieldErrors) -> datetime | None:
    # RFC 3339 allows a lower-case `t` and `z`; a `+HH:MM` offset put in a URL unencoded arrives with its `+`
    # decoded as a space.
    raw = _URL_DECODED_OFFSET.sub(r"+\1", raw.strip()).upper()
    try:
        value = iso_datetime(raw)
        if len(raw) == 10:  # a bare date: its first instant, in UTC
            value = value.replace(tzinfo=UTC)
    except ValueError:
        errors.add(field, "must be an RFC 3339 timestamp, like 2026-11-28T13:33:41Z")
        return None
    if value.tzinfo is None:
        errors.add(field, "must carry a time zone (Z or an offset), like 2026-11-28T13:33:41Z")
        return None
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # an offset moves it before year 1 or after year 9999
        value = None
    if value is None or not EARLIEST <= value < LATEST:
        errors.add(field, "must be on or after 1970-01-01T00:00:00Z and before 9999-01-01T00:00:00Z")
        return None
    return value


def rate(part: int, whole: int) -> float:
    """`part / whole` as a fraction in [0, 1]; 0 for an empty whole (an empty period is not an error)."""
    return part / whole if whole else 0.0


def percentile(count: int, percent: int, value_at: Mapping[int, float]) -> Fraction:
    """The `percent`th percentile of `count` sorted values, of which `value_at` holds (by 0-based rank) at
    least the two it lies between: ranks (count - 1) * percent // 100 and the next one. Linear interpolation,
    as numpy's default and PostgreSQL's percentile_cont: the median of an even count is the mean of the two
    middle values."""
    position = Fraction((count - 1) * percent, 100)
    low = int(position)
    low_value = Fraction(value_at[low])
    high_value = Fraction(value_at.get(low + 1, value_at[low]))
    return low_value + (high_value - low_value) * (position - low)


def proportional_shares(amount: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`amount` (cents, at most the weights' sum) split in proportion to `weights` in whole cents that add up
    to it: each key gets its share rounded down, then each cent left over goes to the key with the most weight
    per cent it would then hold (`weight / (share + 1)`, ties by key: D'Hondt's rule). No share exceeds its
    weight, and a larger amount never gives any key less, so amounts shared out one after another as the
    differences of their running totals' shares add up, key by key, to the shares of the whole (the largest
    remainders, the rule before, can give a key less of a larger amount: a seller's refund webhooks then
    disagreed with the dashboard by a cent)."""
    whole = sum(weights.values())
    if whole <= 0:
        return dict.fromkeys(weights, 0)
    shares = {key: amount * weight // whole for key, weight in weights.items()}
    for _ in range(amount - sum(shares.values())):  # fewer than len(weights)
        best = None
        for key in sorted(weights):
            # weight / (share + 1) compared without division: a over b beats c over d when a * d > c * b.
            if best is None or weights[key] * (shares[best] + 1) > weights[best] * (shares[key] + 1):
                best = key
        assert best is not None
        shares[best] += 1
    return shares


def round_half_up(value: Fraction) -> int:
    """Whole cents: money never becomes a float."""
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


@dataclass(frozen=True, slots=True)
class FunnelStep:
    name: str
    sessions: int
    conversion: float
    """Share of the previous step's sessions (the first step: 1 when it has any)."""


@dataclass(frozen=True, slots=True)
class FunnelReport:
    start: datetime
    end: datetime
    steps: tuple[FunnelStep, ...]
    overall_conversion: float


def funnel_report(period: Period, sessions_per_step: tuple[int, int, int, int]) -> FunnelReport:
    """Each step counts the sessions that also reached every step before it, so a step never exceeds the
    one before and every conversion is a fraction."""
    steps = []
    previous = None
    for name, sessions in zip(FUNNEL_STEPS, sessions_per_step, strict=True):
        conversion = rate(sessions, previous) if previous is not None else (1.0 if sessions else 0.0)
        steps.append(FunnelStep(name, sessions, conversion))
        previous = sessions
    return FunnelReport(
        period.start, period.end, tuple(steps), rate(sessions_per_step[-1], sessions_per_step[0])
    )


@dataclass(frozen=True, slots=True)
class QueryCount:
    query: str
    count: int


@dataclass(frozen=True, slots=True)
class SearchReport:
    start: datetime
    end: datetime
    searches: int
    no_results: int
    no_results_rate: float
    success_rate: float
    """Share of searches followed, in the same session within 30 minutes, by an item view or a cart add."""
    top_queries: tuple[QueryCount, ...]
    top_no_result_queries: tuple[QueryCount, ...]


@dataclass(frozen=True, slots=True)
class MethodStats:
    method: str
    attempts: int
    success_rate: float


@dataclass(frozen=True, slots=True)
class AmountStats:
    """Succeeded payments in one currency (sums across currencies are refused): every amount is in it."""

    count: int
    sum: Money
    mean: Money
    p50: Money
    p95: Money

    @property
    def currency(self) -> str:
        return self.sum.currency


@dataclass(frozen=True, slots=True)
class RefundTotals:
    """Refunds that went through during the period, in one currency, and the period's succeeded payments in
    that currency net of them (negative when more went back than came in)."""

    refunds: int
    refunded: Money
    net: Money

    @property
    def currency(self) -> str:
        return self.refunded.currency


@dataclass(frozen=True, slots=True)
class PaymentsReport:
    start: datetime
    end: datetime
    attempts: int
    succeeded: int
    declined: int
    errored: int
    success_rate: float
    by_method: tuple[MethodStats, ...]
    amounts: tuple[AmountStats, ...]
    """Over every payment that succeeded (each order paid, however it was settled), per currency."""
    refunds: tuple[RefundTotals, ...] = ()
    """Per currency that had payments or refunds in the period."""


@dataclass(frozen=True, slots=True)
class CartsReport:
    start: datetime
    end: datetime
    carts_with_items: int
    """Buyers who put something in their cart during the period."""
    checked_out: int
    """Of those, the ones who started a checkout after their first addition (within the abandon window of
    their last one)."""
    abandoned: int
    """The others, once the abandon window has passed since their last addition."""
    abandonment_rate: float
    abandon_after_s: int


@dataclass(frozen=True, slots=True)
class SessionsReport:
    start: datetime
    end: datetime
    sessions: int
    median_duration_s: float
    p95_duration_s: float
    events_per_session: float
    """Mean number of events per session."""


Report = FunnelReport | SearchReport | PaymentsReport | CartsReport | SessionsReport


@dataclass(frozen=True, slots=True)
class PaymentsOnDay:
    day: str  # YYYY-MM-DD (UTC)
    succeeded: int
    failed: int  # declined or errored


@dataclass(frozen=True, slots=True)
class SellerItemStats:
    item_id: str
    title: str
    units: int
    revenue: Money
    """In the currency the item was sold (or, unsold, is priced) in."""
    views: int
    conversion: float
    """Share of the sessions that viewed the item which then paid for an order holding it."""

    @property
    def currency(self) -> str:
        return self.revenue.currency


@dataclass(frozen=True, slots=True)
class Revenue:
    """A seller's paid orders in one currency: `revenue` as paid, `refunded` their share of what went back (a
    refund of an order holding several sellers' lines is shared in proportion to their subtotals),
    `net_revenue` what is left."""

    revenue: Money
    orders: int
    units: int
    refunded: Money
    net_revenue: Money

    @property
    def currency(self) -> str:
        return self.revenue.currency


@dataclass(frozen=True, slots=True)
class SellerDashboard:
    """A seller's own figures over a period: paid orders holding their items, and views of their items."""

    start: datetime
    end: datetime
    revenue: tuple[Revenue, ...]
    orders: int
    units: int
    views: int
    conversion: float
    """Share of the sessions that viewed one of the seller's items which then paid for an order holding one."""
    top_items: tuple[SellerItemStats, ...]
    refunds: int = 0
    """Refunds that went through on the period's orders holding the seller's items."""
