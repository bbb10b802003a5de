"""The in-process alert rules, driven with an injected clock and synthetic readings (cumulative figures, as the
metrics would give them): each rule waits for evidence (minimum volume, `for:` hold), fires on sustained
trouble within its window plus its hold, resolves with hysteresis, and stays quiet without traffic."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from market.ops.alerting.rules import (
    HOLDS,
    AlertEvaluator,
    History,
    QuantileRule,
    Reading,
    Transition,
    default_rules,
    histogram_quantile,
    rise,
)
from market.telemetry.metrics import DURATION_BUCKETS_S
from tests.support.fakes import FakeClock

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2, 2.5, 5, 7.5, 10, math.inf)
ROUTE = "/api/v1/items"
REPO = Path(__file__).resolve().parents[2]


class Driver:
    """An evaluator fed one reading per step; keeps the cumulative totals like a process's metrics do."""

    def __init__(self, *, backups_scheduled: bool = False, hold: timedelta | None = None) -> None:
        self.clock = FakeClock(START, step=timedelta(0))
        self.evaluator = AlertEvaluator(
            default_rules(backups_scheduled=backups_scheduled, hold=hold), self.clock
        )
        self.total = Reading()

    def add(self, **deltas: float) -> None:
        """Add to the cumulative counters (same names as Reading's fields)."""
        self.total = replace(self.total, **{k: getattr(self.total, k) + v for k, v in deltas.items()})

    def requests(self, count: int, *, seconds: float = 0.05, status: int = 200, route: str = ROUTE) -> None:
        """`count` requests of `seconds` each on `route`."""
        routes = {r: dict(b) for r, b in self.total.route_duration_buckets.items()}
        buckets = routes.setdefault(route, dict.fromkeys(BOUNDS, 0.0))
        for bound in BOUNDS:
            buckets[bound] += count if seconds <= bound else 0
        self.total = replace(
            self.total,
            requests=self.total.requests + count,
            server_errors=self.total.server_errors + (count if status >= 500 else 0),
            route_duration_buckets=routes,
        )

    def step(self, delta: timedelta = STEP) -> list[Transition]:
        self.clock.advance(delta)
        return self.evaluator.observe(self.total)

    def status(self, name: str):
        return next(s for s in self.evaluator.statuses() if s.name == name)

    def idle(self, duration: timedelta) -> list[Transition]:
        """Evaluate every step for `duration` with no new traffic; every transition seen."""
        return self.sustain(duration, lambda: None)

    def sustain(self, duration: timedelta, traffic) -> list[Transition]:
        """Every step for `duration`: call `traffic()` (which adds to the totals), then evaluate."""
        seen: list[Transition] = []
        for _ in range(int(duration / STEP)):
            traffic()
            seen += self.step()
        return seen

    def first_firing(self, name: str, duration: timedelta, traffic) -> timedelta | None:
        """How long after now `name` fires under `traffic` (None if it does not within `duration`)."""
        began = self.clock.now()
        for _ in range(int(duration / STEP)):
            traffic()
            if any(t.status.name == name and t.firing for t in self.step()):
                return self.clock.now() - began
        return None


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


def test_rules_have_the_documented_severities_thresholds_volumes_and_holds():
    rules = {r.name: r for r in default_rules(backups_scheduled=False)}
    assert {n: (r.severity, r.threshold, r.window, r.hold) for n, r in rules.items()} == {
        "high_error_rate": ("critical", 0.05, timedelta(minutes=5), timedelta(minutes=2)),
        "payment_failures": ("critical", 0.10, timedelta(minutes=5), timedelta(minutes=5)),
        "slow_api": ("warning", 2.0, timedelta(minutes=5), timedelta(minutes=5)),
        "webhook_failures": ("warning", 0.01, timedelta(minutes=15), timedelta(minutes=5)),
        "backup_stale": ("warning", 26 * 3600.0, timedelta(0), timedelta(minutes=5)),
    }
    assert {n: getattr(r, "min_events", None) for n, r in rules.items()} == {
        "high_error_rate": 20,
        "payment_failures": 10,
        "slow_api": 20,
        "webhook_failures": 20,
        "backup_stale": None,
    }
    for rule in rules.values():
        assert rule.recover_at <= rule.threshold


def test_the_holds_are_the_prometheus_rules_for_durations():
    alerts = {
        rule["alert"]: rule
        for group in yaml.safe_load((REPO / "infra/prometheus/rules.yaml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    pairs = {
        "high_error_rate": "MarketHighErrorRate",
        "payment_failures": "MarketPaymentFailures",
        "slow_api": "MarketSlowRoute",
        "webhook_failures": "MarketWebhookFailures",
        "backup_stale": "MarketBackupTooOld",
    }
    for name, alert in pairs.items():
        assert alerts[alert]["for"] == f"{int(HOLDS[name].total_seconds() // 60)}m", name
    rules = {r.name: r for r in default_rules(backups_scheduled=False)}
    for name, alert in pairs.items():
        assert alerts[alert]["labels"]["severity"] == rules[name].severity, name


def test_market_alert_for_replaces_every_hold():
    rules = default_rules(backups_scheduled=True, hold=timedelta(seconds=10))
    assert {r.hold for r in rules} == {timedelta(seconds=10)}


# --- single events at low traffic never fire --------------------------------------------------------------


def test_a_single_503_among_ten_requests_never_fires(driver):
    driver.requests(9)
    driver.requests(1, status=503)
    assert driver.idle(timedelta(minutes=30)) == []
    assert driver.status("high_error_rate").value is None  # too few requests to measure


def test_a_single_503_at_any_traffic_never_fires(driver):
    driver.requests(1, status=503)
    assert driver.sustain(timedelta(minutes=30), lambda: driver.requests(1)) == []


def test_a_single_decline_never_fires(driver):
    driver.add(payment_attempts=1, payment_declines=1)
    assert driver.idle(timedelta(minutes=30)) == []
    assert driver.status("payment_failures").value is None


def test_declines_are_not_payment_failures_however_many(driver):
    driver.add(payment_attempts=50, payment_declines=50)
    assert driver.idle(timedelta(minutes=30)) == []
    assert driver.status("payment_failures").value is None


def test_one_failed_webhook_at_low_traffic_never_fires(driver):
    driver.add(webhook_deliveries=3, webhook_failures=1)
    assert driver.idle(timedelta(hours=1)) == []
    assert driver.status("webhook_failures").value is None


def test_one_slow_request_never_fires(driver):
    driver.requests(1, seconds=9.0)
    assert driver.idle(timedelta(minutes=30)) == []
    assert driver.status("slow_api").value is None


# --- high_error_rate --------------------------------------------------------------------------------------


def test_a_sustained_error_rate_fires_within_its_window_plus_its_hold_and_is_announced_once(driver):
    def traffic() -> None:
        driver.requests(18)
        driver.requests(2, status=503)  # 10 % of 80 requests a minute

    after = driver.first_firing("high_error_rate", timedelta(minutes=10), traffic)
    assert after is not None
    assert after <= timedelta(minutes=5) + HOLDS["high_error_rate"]
    assert after >= HOLDS["high_error_rate"]  # waited for the hold
    firing = driver.status("high_error_rate")
    assert firing.value == pytest.approx(0.10)
    assert firing.severity == "critical"
    assert driver.sustain(timedelta(minutes=10), traffic) == []  # still firing, announced once
    assert driver.status("high_error_rate").state == "firing"
    assert driver.status("high_error_rate").since == firing.since


def test_a_burst_shorter_than_the_hold_does_not_fire(driver):
    driver.requests(20)
    driver.requests(10, status=500)  # 33 % for a moment…
    assert driver.step() == []
    driver.requests(400)  # …then diluted below the threshold well before 2 min
    assert driver.idle(timedelta(minutes=10)) == []


def test_error_rate_resolves_after_the_hold_once_the_errors_leave_the_window(driver):
    driver.sustain(timedelta(minutes=5), lambda: (driver.requests(18), driver.requests(2, status=500)))
    assert driver.status("high_error_rate").state == "firing"
    fired_at = driver.status("high_error_rate").since
    seen = driver.idle(timedelta(minutes=5))
    assert names_of(seen) == []  # the window still holds the errors: no data means no recovery yet… until
    seen = driver.idle(timedelta(minutes=3))  # the window is empty, and then the hold has passed
    assert names_of(seen) == [("high_error_rate", "ok")]
    resolved = driver.status("high_error_rate")
    assert resolved.value is None
    assert resolved.since > fired_at
    assert seen[0].previous.since == fired_at


def test_error_rate_of_exactly_five_percent_does_not_fire(driver):
    assert (
        driver.sustain(timedelta(minutes=10), lambda: (driver.requests(95), driver.requests(5, status=500)))
        == []
    )
    assert driver.status("high_error_rate").value == pytest.approx(0.05)


def test_no_flapping_on_a_steady_borderline_rate(driver):
    # Sustained 8 %: fires once.
    driver.sustain(timedelta(minutes=6), lambda: (driver.requests(92), driver.requests(8, status=500)))
    assert driver.status("high_error_rate").state == "firing"
    # Then a steady rate hovering about the threshold, minute by minute 4.5 % and 5.5 %: no change at all.
    seen: list[Transition] = []
    for minute in range(60):
        errors = 9 if minute % 2 else 11
        seen += driver.sustain(
            timedelta(minutes=1), lambda e=errors: (driver.requests(200 - e), driver.requests(e, status=500))
        )
    assert seen == []
    assert driver.status("high_error_rate").state == "firing"


def test_a_steady_borderline_rate_from_ok_never_fires(driver):
    seen: list[Transition] = []
    for step in range(240):  # an hour of 15 s steps alternating 4 % and 6 %: 5 % on average
        errors = 4 if step % 2 else 6
        driver.requests(100 - errors)
        driver.requests(errors, status=500)
        seen += driver.step()
    assert names_of(seen) == []


def test_recovery_needs_the_rate_at_or_below_four_percent_for_the_hold(driver):
    driver.sustain(timedelta(minutes=6), lambda: (driver.requests(90), driver.requests(10, status=500)))
    assert driver.status("high_error_rate").state == "firing"
    seen = driver.sustain(timedelta(minutes=10), lambda: driver.requests(400))
    assert names_of(seen) == [("high_error_rate", "ok")]
    assert seen[0].status.value is not None and seen[0].status.value <= 0.04


def test_health_and_metrics_routes_are_not_in_the_readings_the_rule_sees(driver):
    # The readings leave them out (tests/integration/test_alert_readings.py): here only API traffic counts.
    driver.requests(5)
    driver.requests(5, status=503)
    assert driver.idle(timedelta(minutes=10)) == []  # 10 API requests: not enough to measure


def test_client_errors_do_not_count_as_server_errors(driver):
    driver.requests(10, status=404)
    driver.requests(10, status=422)
    driver.requests(3, status=500)
    assert driver.step() == []
    assert driver.status("high_error_rate").value == pytest.approx(3 / 23, abs=1e-6)


# --- payment_failures -------------------------------------------------------------------------------------


def test_sustained_payment_system_failures_fire_within_window_plus_hold_and_resolve_after_successes(driver):
    def failing() -> None:
        driver.add(payment_attempts=2, payment_failures=1)

    after = driver.first_firing("payment_failures", timedelta(minutes=15), failing)
    assert after is not None and after <= timedelta(minutes=5) + HOLDS["payment_failures"]
    assert driver.status("payment_failures").value == pytest.approx(0.5)
    seen = driver.sustain(timedelta(minutes=15), lambda: driver.add(payment_attempts=5))
    assert names_of(seen) == [("payment_failures", "ok")]


# --- slow_api ---------------------------------------------------------------------------------------------


def test_slow_api_fires_for_one_slow_route_among_fast_ones_and_names_the_worst_p95(driver):
    def traffic() -> None:
        driver.requests(10, seconds=3.0, route="/api/v1/search")
        driver.requests(500, seconds=0.01, route="/api/v1/items")

    after = driver.first_firing("slow_api", timedelta(minutes=15), traffic)
    assert after is not None and after <= timedelta(minutes=5) + HOLDS["slow_api"]
    slow = driver.status("slow_api")
    assert slow.severity == "warning"
    assert 2.5 < slow.value <= 5  # the slow route's p95, not the overall one (which is fast)

    seen = driver.sustain(
        timedelta(minutes=15), lambda: driver.requests(100, seconds=0.02, route="/api/v1/search")
    )
    assert names_of(seen) == [("slow_api", "ok")]
    assert driver.status("slow_api").value < 0.05


def test_a_few_slow_requests_among_many_fast_ones_keep_the_p95_low(driver):
    driver.requests(3, seconds=9.0)
    driver.requests(97, seconds=0.01)
    assert driver.idle(timedelta(minutes=10)) == []
    assert driver.status("slow_api").value is None or driver.status("slow_api").value <= 0.025


# --- webhook_failures -------------------------------------------------------------------------------------


def test_sustained_webhook_failures_fire_and_the_window_is_fifteen_minutes(driver):
    driver.add(webhook_deliveries=100, webhook_failures=5)  # 5 %
    after = driver.first_firing("webhook_failures", timedelta(minutes=10), lambda: None)
    assert after is not None and after <= HOLDS["webhook_failures"] + STEP
    assert driver.idle(timedelta(minutes=9)) == []  # a 15 min window: a 5 min one would have emptied
    assert names_of(driver.idle(timedelta(minutes=7))) == [("webhook_failures", "ok")]


def test_one_webhook_failure_in_two_hundred_deliveries_does_not_fire(driver):
    driver.add(webhook_deliveries=200, webhook_failures=1)
    assert driver.idle(timedelta(minutes=20)) == []


# --- backup_stale -----------------------------------------------------------------------------------------


def test_backup_staleness_is_not_checked_when_backups_are_neither_scheduled_nor_ever_made(driver):
    assert driver.idle(timedelta(hours=30)) == []
    assert driver.status("backup_stale").value is None


def test_scheduled_backups_that_never_succeed_fire_after_26_hours_of_service_and_the_hold():
    driver = Driver(backups_scheduled=True)
    driver.step()
    assert driver.idle(timedelta(hours=26)) == []
    assert driver.status("backup_stale").value == pytest.approx(26 * 3600)
    assert names_of(driver.idle(timedelta(minutes=6))) == [("backup_stale", "firing")]


def test_an_old_backup_fires_after_the_hold_and_a_new_one_resolves_after_the_hold(driver):
    now = driver.clock.now().timestamp()
    driver.total = replace(driver.total, backup_last_success=now - 27 * 3600)
    assert names_of(driver.idle(timedelta(minutes=6))) == [("backup_stale", "firing")]
    driver.total = replace(driver.total, backup_last_success=driver.clock.now().timestamp())
    assert names_of(driver.idle(timedelta(minutes=6))) == [("backup_stale", "ok")]


def test_market_alert_for_makes_every_rule_fire_after_that_hold():
    driver = Driver(hold=timedelta(seconds=30))
    driver.step()
    driver.requests(20)
    driver.requests(5, status=500)
    assert driver.step() == []  # condition met, waiting
    assert driver.step() == []  # 15 s
    assert names_of(driver.step()) == [("high_error_rate", "firing")]  # 30 s


def test_with_no_hold_a_rule_fires_at_the_first_evaluation_that_has_the_evidence():
    driver = Driver(hold=timedelta(0))
    driver.step()
    driver.requests(20)
    driver.requests(5, status=500)
    assert names_of(driver.step()) == [("high_error_rate", "firing")]


# --- windows and counters ---------------------------------------------------------------------------------


def test_a_counter_reset_counts_from_zero_instead_of_going_negative(driver):
    driver.requests(100)
    driver.step()
    # A worker restarted: its counters start again from zero, and it has served 20 errors since.
    driver.total = Reading(requests=20, server_errors=20)
    driver.step()
    assert driver.status("high_error_rate").value == pytest.approx(20 / 120, abs=1e-6)


def test_several_rules_can_fire_and_resolve_in_the_same_evaluation():
    driver = Driver(hold=timedelta(0))
    driver.step()
    driver.requests(20, status=500)
    driver.add(payment_attempts=10, payment_failures=10)
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


def test_latency_thresholds_are_bounds_of_the_request_duration_histogram():
    """The in-app quantile interpolates inside a bucket as Prometheus does: its threshold must be a bound of the
    histogram it reads, or slow_api fires while most requests were under the threshold."""
    quantile_rules = [
        rule for rule in default_rules(backups_scheduled=False) if isinstance(rule, QuantileRule)
    ]
    assert quantile_rules
    for rule in quantile_rules:
        assert rule.threshold in DURATION_BUCKETS_S, rule.name


def test_rule_names_must_be_unique():
    rules = default_rules(backups_scheduled=False)
    with pytest.raises(ValueError, match="unique"):
        AlertEvaluator([*rules, rules[0]], FakeClock(START, step=timedelta(0)))
