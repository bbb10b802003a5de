"""The in-process alert rules, driven with an injected clock and synthetic readings (cumulative figures, as the
metrics would give them): each rule fires above its threshold, resolves, and stays quiet without traffic."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from market.ops.alerting.rules import (
    AlertEvaluator,
    History,
    Reading,
    Transition,
    default_rules,
    histogram_quantile,
    rise,
)
from tests.support.fakes import FakeClock

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2, 2.5, 5, 7.5, 10, math.inf)


class Driver:
    """An evaluator fed one reading per step; keeps the cumulative totals like a process's metrics do."""

    def __init__(self, *, backups_scheduled: bool = False) -> None:
        self.clock = FakeClock(START, step=timedelta(0))
        self.evaluator = AlertEvaluator(default_rules(backups_scheduled=backups_scheduled), self.clock)
        self.total = Reading(duration_buckets=dict.fromkeys(BOUNDS, 0.0))

    def add(self, **deltas: float) -> None:
        """Add to the cumulative counters (same names as Reading's fields)."""
        self.total = replace(self.total, **{k: getattr(self.total, k) + v for k, v in deltas.items()})

    def requests(self, count: int, *, seconds: float = 0.05, status: int = 200) -> None:
        """`count` requests of `seconds` each."""
        buckets = {b: n + (count if seconds <= b else 0) for b, n in self.total.duration_buckets.items()}
        self.total = replace(
            self.total,
            requests=self.total.requests + count,
            server_errors=self.total.server_errors + (count if status >= 500 else 0),
            duration_buckets=buckets,
        )

    def step(self, delta: timedelta = STEP) -> list[Transition]:
        self.clock.advance(delta)
        return self.evaluator.observe(self.total)

    def status(self, name: str):
        return next(s for s in self.evaluator.statuses() if s.name == name)

    def idle(self, duration: timedelta) -> list[Transition]:
        """Evaluate every step for `duration` with no new traffic; every transition seen."""
        seen: list[Transition] = []
        steps = int(duration / STEP)
        for _ in range(steps):
            seen += self.step()
        return seen


def names_of(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.status.name, t.status.state) for t in transitions]


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.step()  # the baseline reading, as the monitor takes one at start
    return d


# --- no traffic -------------------------------------------------------------------------------------------


def test_no_traffic_fires_nothing_and_measures_nothing(driver):
    assert driver.idle(timedelta(hours=1)) == []
    for status in driver.evaluator.statuses():
        assert status.state == "ok"
        assert status.value is None
        assert status.since is None


def test_before_the_first_reading_every_rule_is_ok_and_unevaluated():
    evaluator = AlertEvaluator(default_rules(backups_scheduled=True), FakeClock(START, step=timedelta(0)))
    assert evaluator.evaluated_at is None
    assert [s.name for s in evaluator.statuses()] == [
        "high_error_rate",
        "payment_failures",
        "slow_api",
        "webhook_failures",
        "backup_stale",
    ]
    assert {s.state for s in evaluator.statuses()} == {"ok"}


def test_rules_have_the_documented_severities_and_thresholds():
    rules = {r.name: r for r in default_rules(backups_scheduled=False)}
    assert {n: (r.severity, r.threshold, r.window) for n, r in rules.items()} == {
        "high_error_rate": ("critical", 0.05, timedelta(minutes=5)),
        "payment_failures": ("critical", 0.10, timedelta(minutes=5)),
        "slow_api": ("warning", 2.0, timedelta(minutes=5)),
        "webhook_failures": ("critical", 0.01, timedelta(minutes=15)),
        "backup_stale": ("critical", 26 * 3600.0, timedelta(0)),
    }


# --- high_error_rate --------------------------------------------------------------------------------------


def test_error_rate_above_five_percent_fires_once_and_resolves_once_when_the_errors_leave_the_window(driver):
    driver.requests(90)
    driver.requests(10, status=500)
    assert names_of(driver.step()) == [("high_error_rate", "firing")]
    firing = driver.status("high_error_rate")
    assert firing.value == pytest.approx(0.10)
    assert firing.since == driver.clock.now()
    assert firing.severity == "critical"

    # Still firing for the rest of the window, but announced only once.
    during = driver.idle(timedelta(minutes=4))
    assert during == []
    assert driver.status("high_error_rate").state == "firing"
    assert driver.status("high_error_rate").since == firing.since

    after = driver.idle(timedelta(minutes=2))
    assert names_of(after) == [("high_error_rate", "ok")]
    resolved = driver.status("high_error_rate")
    assert resolved.value is None  # the window is empty again: nothing to measure
    assert resolved.since is not None and resolved.since > firing.since
    assert after[0].previous.since == firing.since


def test_error_rate_resolves_when_good_traffic_dilutes_the_errors(driver):
    driver.requests(10)
    driver.requests(5, status=503)
    assert names_of(driver.step()) == [("high_error_rate", "firing")]
    driver.requests(200)
    assert names_of(driver.step()) == [("high_error_rate", "ok")]
    assert driver.status("high_error_rate").value == pytest.approx(5 / 215, abs=1e-6)


def test_error_rate_of_exactly_five_percent_does_not_fire(driver):
    driver.requests(95)
    driver.requests(5, status=500)
    assert driver.step() == []
    assert driver.status("high_error_rate").value == pytest.approx(0.05)


def test_client_errors_do_not_count_as_server_errors(driver):
    driver.requests(10, status=404)
    driver.requests(10, status=422)
    assert driver.step() == []
    assert driver.status("high_error_rate").value == 0


# --- payment_failures -------------------------------------------------------------------------------------


def test_payment_failures_above_ten_percent_fire_and_resolve_after_successful_payments(driver):
    driver.add(payment_attempts=1, payment_failures=1)
    assert names_of(driver.step()) == [("payment_failures", "firing")]
    assert driver.status("payment_failures").value == 1.0

    driver.add(payment_attempts=5)  # 1 of 6 failed: still above 10 %
    assert driver.step() == []
    assert driver.status("payment_failures").state == "firing"

    driver.add(payment_attempts=5)  # 1 of 11: below
    assert names_of(driver.step()) == [("payment_failures", "ok")]
    assert driver.status("payment_failures").value == pytest.approx(1 / 11, abs=1e-6)


def test_payment_failures_resolve_when_the_window_has_slid_past_them(driver):
    driver.add(payment_attempts=3, payment_failures=2)
    assert names_of(driver.step()) == [("payment_failures", "firing")]
    assert names_of(driver.idle(timedelta(minutes=6))) == [("payment_failures", "ok")]


# --- slow_api ---------------------------------------------------------------------------------------------


def test_slow_api_fires_when_the_p95_exceeds_two_seconds_and_resolves_when_requests_are_fast_again(driver):
    driver.requests(10, seconds=3.0)
    assert names_of(driver.step()) == [("slow_api", "firing")]
    slow = driver.status("slow_api")
    assert slow.severity == "warning"
    assert 2.5 < slow.value <= 5

    driver.requests(400, seconds=0.02)
    assert names_of(driver.step()) == [("slow_api", "ok")]
    assert driver.status("slow_api").value < 0.05


def test_a_few_slow_requests_among_many_fast_ones_keep_the_p95_low(driver):
    driver.requests(3, seconds=9.0)
    driver.requests(97, seconds=0.01)
    assert driver.step() == []
    assert driver.status("slow_api").value <= 0.025


# --- webhook_failures -------------------------------------------------------------------------------------


def test_webhook_failures_above_one_percent_fire_for_fifteen_minutes(driver):
    driver.add(webhook_deliveries=50, webhook_failures=1)  # 2 %
    assert names_of(driver.step()) == [("webhook_failures", "firing")]
    assert driver.idle(timedelta(minutes=14)) == []  # a 15 min window: a 5 min one would have resolved
    assert names_of(driver.idle(timedelta(minutes=2))) == [("webhook_failures", "ok")]


def test_one_webhook_failure_in_two_hundred_deliveries_does_not_fire(driver):
    driver.add(webhook_deliveries=200, webhook_failures=1)
    assert driver.step() == []
    assert driver.status("webhook_failures").value == pytest.approx(0.005)


# --- backup_stale -----------------------------------------------------------------------------------------


def test_backup_staleness_is_not_checked_when_backups_are_neither_scheduled_nor_ever_made(driver):
    assert driver.idle(timedelta(hours=30)) == []
    assert driver.status("backup_stale").value is None


def test_scheduled_backups_that_never_succeed_fire_after_26_hours_of_service():
    driver = Driver(backups_scheduled=True)
    driver.step()
    assert driver.idle(timedelta(hours=25)) == []
    assert driver.status("backup_stale").value == pytest.approx(25 * 3600)
    assert names_of(driver.idle(timedelta(hours=2))) == [("backup_stale", "firing")]


def test_an_old_backup_fires_at_once_and_a_new_one_resolves(driver):
    now = driver.clock.now().timestamp()
    driver.add()
    driver.total = replace(driver.total, backup_last_success=now - 27 * 3600)
    assert names_of(driver.step()) == [("backup_stale", "firing")]
    driver.total = replace(driver.total, backup_last_success=driver.clock.now().timestamp())
    assert names_of(driver.step()) == [("backup_stale", "ok")]
    assert driver.status("backup_stale").value == pytest.approx(15)


def test_a_backup_that_succeeded_once_is_expected_again_within_26_hours(driver):
    driver.total = replace(driver.total, backup_last_success=driver.clock.now().timestamp())
    assert driver.step() == []
    assert driver.idle(timedelta(hours=25)) == []
    assert names_of(driver.idle(timedelta(hours=1, minutes=15))) == [("backup_stale", "firing")]


# --- windows and counters ---------------------------------------------------------------------------------


def test_a_counter_reset_counts_from_zero_instead_of_going_negative(driver):
    driver.requests(100)
    driver.step()
    # A worker restarted: its counters start again from zero, and it has served 20 errors since.
    driver.total = Reading(requests=20, server_errors=20, duration_buckets=dict.fromkeys(BOUNDS, 0.0))
    assert names_of(driver.step()) == [("high_error_rate", "firing")]
    assert driver.status("high_error_rate").value == pytest.approx(20 / 120, abs=1e-6)


def test_several_rules_can_fire_and_resolve_in_the_same_evaluation(driver):
    driver.requests(10, status=500)
    driver.add(payment_attempts=2, payment_failures=2)
    assert sorted(names_of(driver.step())) == [("high_error_rate", "firing"), ("payment_failures", "firing")]
    assert sorted(names_of(driver.idle(timedelta(minutes=6)))) == [
        ("high_error_rate", "ok"),
        ("payment_failures", "ok"),
    ]


def test_history_keeps_only_what_the_longest_window_needs():
    history = History(keep=timedelta(minutes=15))
    for i in range(1000):
        history.add(START + i * STEP, Reading())
    assert len(history) == 15 * 4 + 1  # the window's readings plus its baseline


def test_a_window_reads_from_the_last_reading_at_or_before_its_start():
    history = History(keep=timedelta(minutes=5))
    for i, total in enumerate([0, 10, 30, 60]):
        history.add(START + i * timedelta(minutes=2), Reading(requests=total))
    now = START + 3 * timedelta(minutes=2)
    requests = lambda r: r.requests  # noqa: E731
    assert history.increase(requests, timedelta(minutes=3), now) == 50  # from the reading at +0:02
    assert history.increase(requests, timedelta(minutes=2), now) == 30  # from the one at +0:04, exactly
    assert history.increase(requests, timedelta(minutes=5), now) == 60
    assert history.increase(requests, timedelta(minutes=60), now) == 60  # what there is


def test_rise_adds_up_increases_and_treats_drops_as_resets():
    assert rise([]) == 0
    assert rise([5]) == 0
    assert rise([1, 4, 4, 9]) == 8
    assert rise([10, 12, 3, 5]) == 2 + 3 + 2


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({1.0: 0, 2.0: 0, math.inf: 0}, None),
        ({1.0: 100, 2.0: 100, math.inf: 100}, 0.95),  # everything in the first bucket: interpolated from 0
        ({1.0: 0, 2.0: 10, math.inf: 10}, 1.95),
        ({1.0: 0, 2.0: 0, math.inf: 10}, 2.0),  # in +Inf: the highest finite bound
        ({1.0: 50, 2.0: 90, 4.0: 100, math.inf: 100}, 3.0),
        ({}, None),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(buckets, expected):
    result = histogram_quantile(0.95, buckets)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_rule_names_must_be_unique():
    rules = default_rules(backups_scheduled=False)
    with pytest.raises(ValueError, match="unique"):
        AlertEvaluator([*rules, rules[0]], FakeClock(START, step=timedelta(0)))
