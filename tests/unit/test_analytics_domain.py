"""Report periods, percentiles and the funnel's arithmetic."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from market.domain.analytics import (
    funnel_report,
    parse_period,
    percentile,
    proportional_shares,
    rate,
    round_half_up,
)
from market.domain.errors import ValidationFailed

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def fields_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_a_period_defaults_to_the_last_30_days() -> None:
    period = parse_period(None, None, NOW)
    assert (period.start, period.end) == (NOW - timedelta(days=30), NOW)


def test_a_period_reads_rfc_3339_with_z_or_an_offset_and_keeps_utc() -> None:
    period = parse_period("2026-11-01T00:00:00Z", "2026-11-02T01:00:00+01:00", NOW)
    assert period.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 2, tzinfo=UTC)
    assert period.end.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        "2026-11-01t00:00:00z",  # RFC 3339 allows lower case
        "2026-11-01T01:00:00 01:00",  # `+01:00` sent unencoded in a URL: the `+` arrives as a space
        "2026-11-01 00:00:00Z",
        "2026-10-31T23:00:00.000000-01:00",
    ],
)
def test_every_spelling_of_the_same_instant_reads_alike(raw: str) -> None:
    assert parse_period(raw, "2026-11-02T00:00:00Z", NOW).start == datetime(2026, 11, 1, tzinfo=UTC)


def test_a_bare_date_is_its_first_instant_in_utc() -> None:
    assert parse_period("2026-11-01", "2026-11-02", NOW).start == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw_from", "raw_to", "bad"),
    [
        ("yesterday", None, ["from"]),
        ("2026-11-01T00:00:00", None, ["from"]),  # no time zone: ambiguous
        ("2026-13-01T00:00:00Z", "nope", ["to", "from"]),
        ("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z", ["from"]),
        ("2025-01-01T00:00:00Z", "2026-11-01T00:00:00Z", ["to"]),
        ("\x00", None, ["from"]),
        # CPython's fromisoformat reads only up to a NUL: what follows it went unseen.
        ("2026-11-01T00:00:00Z\x00", None, ["from"]),
        (None, "2026-11-01T00:00:00\x00+05:00", ["to"]),
        ("2026-11-01T00:00:00Z\x00garbage", "2026-11-02T00:00:00Z\x01", ["to", "from"]),
        # Near datetime.min and .max: once OverflowErrors (in the offset's conversion to UTC, or later sums).
        ("0001-01-01T00:00:00+01:00", None, ["from"]),
        ("0001-01-01", "0001-01-02", ["to", "from"]),
        (None, "0001-01-05T00:00:00Z", ["to"]),
        ("9999-12-31T23:59:59-01:00", None, ["from"]),
        ("9999-12-31", "9999-12-31T23:59:59Z", ["to", "from"]),
        ("1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", ["from"]),
    ],
)
def test_bad_periods_name_the_bad_parameter(raw_from: str | None, raw_to: str | None, bad: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_period(raw_from, raw_to, NOW)
    assert fields_of(exc) == bad


def test_the_default_from_never_precedes_the_earliest_instant() -> None:
    period = parse_period(None, "1970-01-05T00:00:00Z", NOW)
    assert period.start == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_period_of_exactly_366_days_is_allowed() -> None:
    period = parse_period("2025-11-27T12:00:00Z", "2026-11-28T12:00:00Z", NOW)
    assert period.end - period.start == timedelta(days=366)


@pytest.mark.parametrize(
    "values", [[7], [1, 2], [5, 1, 3], [10, 20, 30, 40], list(range(1, 101)), [3, 3, 9, 12, 400]]
)
@pytest.mark.parametrize("percent", [50, 95])
def test_percentiles_interpolate_like_statistics_inclusive(values: list[int], percent: int) -> None:
    ordered = sorted(values)
    expected = (
        ordered[0]
        if len(ordered) == 1
        else statistics.quantiles(ordered, n=100, method="inclusive")[percent - 1]
    )
    result = percentile(len(ordered), percent, dict(enumerate(ordered)))
    assert float(result) == pytest.approx(expected)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert percentile(4, 50, {1: 20, 2: 30}) == 25


def test_money_rounds_half_up_never_to_even() -> None:
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(7, 2)) == 4
    assert round_half_up(Fraction(49, 10)) == 5
    assert round_half_up(Fraction(41, 10)) == 4


def test_an_empty_whole_gives_a_zero_rate_not_an_error() -> None:
    assert rate(0, 0) == 0.0
    assert rate(1, 4) == 0.25


def test_the_funnel_converts_each_step_against_the_one_before() -> None:
    period = parse_period(None, None, NOW)
    report = funnel_report(period, (10, 5, 4, 1))
    assert [(s.name, s.sessions, s.conversion) for s in report.steps] == [
        ("browsed", 10, 1.0),
        ("carted", 5, 0.5),
        ("checkout_started", 4, 0.8),
        ("paid", 1, 0.25),
    ]
    assert report.overall_conversion == 0.1


def test_an_empty_funnel_is_all_zeros() -> None:
    report = funnel_report(parse_period(None, None, NOW), (0, 0, 0, 0))
    assert [s.conversion for s in report.steps] == [0.0] * 4
    assert report.overall_conversion == 0.0


@pytest.mark.parametrize(
    ("amount", "weights", "expected"),
    [
        (5, {"a": 1001, "b": 1001, "c": 1001}, {"a": 2, "b": 2, "c": 1}),
        (1, {"a": 1001, "b": 1001, "c": 1001}, {"a": 1, "b": 0, "c": 0}),
        (1734, {"a": 1000, "b": 2468}, {"a": 500, "b": 1234}),
        (3003, {"a": 1001, "b": 1001, "c": 1001}, {"a": 1001, "b": 1001, "c": 1001}),
        (10, {"a": 1, "b": 99}, {"a": 0, "b": 10}),
        (0, {"a": 5}, {"a": 0}),
        (0, {"a": 0}, {"a": 0}),
    ],
)
def test_proportional_shares_add_up_to_the_amount_and_never_exceed_a_weight(amount, weights, expected):
    shares = proportional_shares(amount, weights)
    assert shares == expected
    assert sum(shares.values()) == amount
    assert all(shares[key] <= weight for key, weight in weights.items())


@pytest.mark.parametrize(
    "weights",
    [{"a": 5, "b": 7, "c": 9}, {"a": 1999, "b": 500}, {"a": 1, "b": 1, "c": 1}, {"a": 3, "b": 0, "c": 8}],
)
def test_a_larger_amount_never_gives_a_key_less(weights):
    # So refunds shared out one after another (the differences of their running totals' shares) add up to the
    # shares of their sum. The largest remainders gave "a" 3 cents of 10 and 2 of 11 with the first weights.
    whole = sum(weights.values())
    previous = proportional_shares(0, weights)
    for amount in range(1, whole + 1):
        shares = proportional_shares(amount, weights)
        assert sum(shares.values()) == amount
        assert all(previous[key] <= shares[key] <= weights[key] for key in weights), (
            amount,
            previous,
            shares,
        )
        previous = shares
