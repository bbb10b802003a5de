"""In-process alerting for the embedded default, where no Prometheus evaluates the alert rules: the same
conditions and the same evidence rules, computed here over sliding windows of the service's own cumulative metrics.

Plain logic, no I/O. An `AlertEvaluator` is fed `Reading`s — the cumulative figures Prometheus would scrape —
stamps each with its injected clock, keeps them in a ring buffer as long as the longest window needs, and on
every `observe()` measures each rule over its window and returns the state changes (`Transition`s). Reading
the metrics, the schedule and the notifications live in `market.ops.alerting`.

A windowed increase is Prometheus's `increase()` without its extrapolation: the sum of the rises between
consecutive readings, from the last reading at or before the window's start to the newest (a counter that goes
down was reset, by a restarted worker, and counts from zero again). A window thus covers its length plus at
most one evaluation interval; until the service has run that long, it covers what there is.

Alerts wait for evidence, as the Prometheus rules do:

- **minimum volume**: a ratio is measured only when its window holds at least `min_events` events and at
  least `min_bad` bad ones; below that the value is null and the rule cannot fire. With `min_events` at
  least 1/threshold, one bad event can never push a ratio over its threshold, and `min_bad` >= 2 makes sure
  of it: a single 503, a single decline, one failed webhook never fire.
- **hold (`for:`)**: the condition must hold at every evaluation for `hold` before the rule fires (the
  Prometheus rule's `for:`; `MARKET_ALERT_FOR` replaces every hold time). A dip under the threshold restarts
  the wait.
- **recovery hysteresis**: a firing rule resolves only once its value has stayed at or below `recover_at`
  (80 % of the threshold for rates and latencies) — or had nothing to measure — for `hold` as well, so a
  steady rate near the threshold does not flap.

The rules (strict thresholds; pages are the critical ones — users or money are hurt now):

| name | severity | value | window | minimum volume | fires when | for | recovers at |
|---|---|---|---|---|---|---|---|
| `high_error_rate` | critical (page) | share of HTTP responses that were 5xx, `/health/*` and `/metrics` excluded | 5 min | 20 requests, 3 of them 5xx | > 0.05 | 2 min | <= 0.04 |
| `payment_failures` | critical (page) | share of payment attempts that failed on the payment system's side (outcome `error`: gateway error or timeout); declines are the card holder's answer and do not count | 5 min | 10 attempts, 3 failed | > 0.10 | 5 min | <= 0.08 |
| `slow_api` | warning | p95 request duration in seconds of the slowest route (per `http.route`; `/health/*`, `/metrics` excluded) | 5 min | 20 requests on that route | > 2 | 5 min | <= 1.6 |
| `webhook_failures` | warning | share of webhook deliveries that failed, both directions | 15 min | 20 deliveries, 3 failed | > 0.01 | 5 min | <= 0.008 |
| `backup_stale` | warning | seconds since the last successful backup | — | — | > 26 h | 5 min | <= 26 h |

Why only two page: a 5xx rate means users see errors now; payment-system failures mean money is not being
taken now. Slow routes, webhooks (outbound deliveries retry for a day; inbound payment events are also
reconciled on a schedule) and a stale backup need someone today, not at 3 a.m.

`webhook_failures` counts outbound seller deliveries and authentic inbound provider events we failed to
handle. Posts that fail authentication (`market.webhook.rejected`) are not deliveries at all: anyone can send
one, and one stranger must not page on-call. `backup_stale` applies only when backups are expected — a daily
schedule is configured, or a backup has succeeded at least once; with a schedule and no backup yet, the age
counts from when evaluation began.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal, Protocol

Severity = Literal["critical", "warning"]
State = Literal["ok", "firing"]
Unit = Literal["ratio", "s"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


@dataclass(frozen=True, slots=True)
class Reading:
    """The service's cumulative figures at one moment: everything the rules need, nothing else."""

    requests: float = 0.0
    """HTTP responses sent, operational routes (`/health/*`, `/metrics`) excluded."""
    server_errors: float = 0.0
    """Of which 5xx."""
    route_duration_buckets: Mapping[str, Mapping[float, float]] = field(default_factory=dict)
    """Request durations per route template (operational routes excluded): upper bound in seconds
    (`math.inf` included) -> cumulative count, as in `le`."""
    payment_attempts: float = 0.0
    payment_failures: float = 0.0
    """Payment attempts that failed on the payment system's side (outcome `error`: gateway error or timeout)."""
    payment_declines: float = 0.0
    """Payment attempts the card holder's bank declined: not failures of ours, never alerted on."""
    webhook_deliveries: float = 0.0
    webhook_failures: float = 0.0
    backup_last_success: float | None = None
    """Unix time of the newest successful backup known; None when none is."""


Counter = Callable[[Reading], float]


class History:
    """Timestamped readings, oldest first, kept while some window may still reach them."""

    def __init__(self, keep: timedelta) -> None:
        self.keep = keep
        self.started: datetime | None = None
        """When the first reading was taken: what a rule with no data yet counts from."""
        self._readings: deque[tuple[datetime, Reading]] = deque()

    def __len__(self) -> int:
        return len(self._readings)

    def add(self, at: datetime, reading: Reading) -> None:
        if self.started is None:
            self.started = at
        self._readings.append((at, reading))
        cutoff = at - self.keep
        # Keep the newest reading at or before the cutoff: it is the baseline of the longest window.
        while len(self._readings) >= 2 and self._readings[1][0] <= cutoff:
            self._readings.popleft()

    @property
    def latest(self) -> Reading | None:
        return self._readings[-1][1] if self._readings else None

    def span(self, window: timedelta, now: datetime) -> list[Reading]:
        """The readings a window ending `now` reads: its baseline (the last one at or before the start, else
        the oldest) and every later one."""
        start = now - window
        readings = list(self._readings)
        first = 0
        for index, (at, _) in enumerate(readings):
            if at <= start:
                first = index
            else:
                break
        return [reading for _, reading in readings[first:]]

    def increase(self, counter: Counter, window: timedelta, now: datetime) -> float:
        return rise(counter(reading) for reading in self.span(window, now))

    def route_bucket_increases(self, window: timedelta, now: datetime) -> dict[str, dict[float, float]]:
        """Per route, each bucket's increase over the window."""
        readings = self.span(window, now)
        routes = sorted({route for reading in readings for route in reading.route_duration_buckets})
        out: dict[str, dict[float, float]] = {}
        for route in routes:
            series = [reading.route_duration_buckets.get(route, {}) for reading in readings]
            bounds = sorted({bound for buckets in series for bound in buckets})
            out[route] = {bound: rise(buckets.get(bound, 0.0) for buckets in series) for bound in bounds}
        return out


def rise(values: Iterable[float]) -> float:
    """How much a cumulative counter grew over consecutive values, counting a drop as a reset to zero."""
    total = 0.0
    for previous, current in pairwise(values):
        total += current - previous if current >= previous else current
    return total


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's `histogram_quantile` over cumulative bucket counts (`le` -> count, `math.inf` last):
    linear interpolation inside the bucket holding the rank; the highest finite bound when it falls in +Inf.
    None without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = max(buckets[bound], lower_count)  # cumulative: never fewer than the bucket below
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


class Rule(Protocol):
    name: str
    severity: Severity
    threshold: float
    window: timedelta
    """How far back the rule reads (zero for a rule about the newest reading only)."""
    hold: timedelta
    """How long the condition must hold before the rule fires, and its clearing before it resolves (`for:`)."""
    unit: Unit
    description: str

    @property
    def recover_at(self) -> float:
        """A firing rule resolves once its value stays at or below this (or has nothing to measure) for `hold`."""

    def measure(self, history: History, now: datetime) -> float | None:
        """The rule's value now; None when there is nothing to measure (then it does not fire)."""


def _counter(name: str) -> Counter:
    def read(reading: Reading) -> float:
        return getattr(reading, name)

    return read


@dataclass(frozen=True, slots=True)
class RatioRule:
    """`part` / `whole` of two counters' increases over the window; None when `whole` rose by fewer than
    `min_events` or `part` by fewer than `min_bad` (not enough evidence either way)."""

    name: str
    severity: Severity
    threshold: float
    window: timedelta
    part: str
    whole: str
    description: str
    min_events: int
    min_bad: int
    hold: timedelta
    unit: Unit = "ratio"

    @property
    def recover_at(self) -> float:
        return self.threshold * RECOVERY

    def measure(self, history: History, now: datetime) -> float | None:
        whole = history.increase(_counter(self.whole), self.window, now)
        if whole <= 0 or whole < self.min_events:
            return None
        part = history.increase(_counter(self.part), self.window, now)
        if part < self.min_bad:
            return None
        return part / whole


@dataclass(frozen=True, slots=True)
class QuantileRule:
    """A quantile of the request durations over the window, per route: the worst route's value among the
    routes with at least `min_events` requests in the window; None when no route has that many."""

    name: str
    severity: Severity
    threshold: float
    window: timedelta
    quantile: float
    description: str
    min_events: int
    hold: timedelta
    unit: Unit = "s"

    @property
    def recover_at(self) -> float:
        return self.threshold * RECOVERY

    def per_route(self, history: History, now: datetime) -> dict[str, float]:
        out = {}
        for route, buckets in history.route_bucket_increases(self.window, now).items():
            if buckets.get(math.inf, 0.0) < max(self.min_events, 1):
                continue
            value = histogram_quantile(self.quantile, buckets)
            if value is not None:
                out[route] = value
        return out

    def measure(self, history: History, now: datetime) -> float | None:
        return max(self.per_route(history, now).values(), default=None)


@dataclass(frozen=True, slots=True)
class StalenessRule:
    """Seconds since the last successful backup, when backups are expected: `scheduled`, or one succeeded."""

    name: str
    severity: Severity
    threshold: float
    scheduled: bool
    description: str
    hold: timedelta
    window: timedelta = timedelta(0)
    unit: Unit = "s"

    @property
    def recover_at(self) -> float:
        """A fresh backup clears it at once: staleness has no flapping to damp."""
        return self.threshold

    def measure(self, history: History, now: datetime) -> float | None:
        latest = history.latest
        last = latest.backup_last_success if latest is not None else None
        if last is not None:
            return max(0.0, now.timestamp() - last)
        if self.scheduled and history.started is not None:
            return (now - history.started).total_seconds()
        return None


HOLDS = {
    "high_error_rate": timedelta(minutes=2),
    "payment_failures": timedelta(minutes=5),
    "slow_api": timedelta(minutes=5),
    "webhook_failures": timedelta(minutes=5),
    "backup_stale": timedelta(minutes=5),
}
"""Each rule's `for:`, the same as its Prometheus alert's (infra/prometheus/rules.yaml)."""
RECOVERY = 0.8
"""A firing rate or latency rule resolves at or below this share of its threshold."""


def default_rules(*, backups_scheduled: bool, hold: timedelta | None = None) -> list[Rule]:
    """The rules of the Prometheus alerting rules, with their windows, thresholds, volumes and `for:`;
    `hold` (MARKET_ALERT_FOR) replaces every rule's `for:` when given."""
    five_minutes = timedelta(minutes=5)

    def hold_of(name: str) -> timedelta:
        return HOLDS[name] if hold is None else hold

    return [
        RatioRule(
            name="high_error_rate",
            severity="critical",
            threshold=0.05,
            window=five_minutes,
            part="server_errors",
            whole="requests",
            min_events=20,
            min_bad=3,
            hold=hold_of("high_error_rate"),
            description="Share of HTTP responses that were 5xx over the last 5 min (/health/* and /metrics "
            "excluded; at least 20 requests and 3 errors).",
        ),
        RatioRule(
            name="payment_failures",
            severity="critical",
            threshold=0.10,
            window=five_minutes,
            part="payment_failures",
            whole="payment_attempts",
            min_events=10,
            min_bad=3,
            hold=hold_of("payment_failures"),
            description="Share of payment attempts that failed on the payment system's side (gateway error or "
            "timeout; declines do not count) over the last 5 min (at least 10 attempts and 3 failures).",
        ),
        QuantileRule(
            name="slow_api",
            severity="warning",
            threshold=2.0,
            window=five_minutes,
            quantile=0.95,
            min_events=20,
            hold=hold_of("slow_api"),
            description="95th percentile of the HTTP request duration in seconds of the slowest route "
            "(routes with at least 20 requests) over the last 5 min.",
        ),
        RatioRule(
            name="webhook_failures",
            severity="warning",
            threshold=0.01,
            window=timedelta(minutes=15),
            part="webhook_failures",
            whole="webhook_deliveries",
            min_events=20,
            min_bad=3,
            hold=hold_of("webhook_failures"),
            description="Share of webhook deliveries (outbound to sellers, and authentic inbound events from "
            "the payment provider) that failed over the last 15 min (at least 20 deliveries and 3 failures); "
            "unauthenticated posts are not counted.",
        ),
        StalenessRule(
            name="backup_stale",
            severity="warning",
            threshold=26 * 3600.0,
            scheduled=backups_scheduled,
            hold=hold_of("backup_stale"),
            description="Seconds since the last successful backup; checked when MARKET_BACKUP_SCHEDULE is "
            "set or a backup has ever succeeded.",
        ),
    ]


@dataclass(frozen=True, slots=True)
class AlertStatus:
    name: str
    severity: Severity
    state: State
    value: float | None
    threshold: float
    since: datetime | None
    """When the rule entered its current state; None while it has been ok since evaluation began."""
    unit: Unit
    description: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule changed state: `status` is the new one (its `since` is the moment of the change)."""

    status: AlertStatus
    previous: AlertStatus

    @property
    def firing(self) -> bool:
        return self.status.state == "firing"


class AlertEvaluator:
    def __init__(self, rules: Sequence[Rule], clock: Clock) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"alert rule names must be unique: {names}")
        self._rules = tuple(rules)
        self._clock = clock
        self._history = History(keep=max((rule.window for rule in rules), default=timedelta(0)))
        self._statuses = {
            rule.name: AlertStatus(
                name=rule.name,
                severity=rule.severity,
                state="ok",
                value=None,
                threshold=rule.threshold,
                since=None,
                unit=rule.unit,
                description=rule.description,
            )
            for rule in rules
        }
        self._waiting_since: dict[str, datetime] = {}
        """Per rule: since when the condition to change state has held (to fire when ok, to resolve when
        firing); absent while it does not hold."""
        self.evaluated_at: datetime | None = None

    def observe(self, reading: Reading) -> list[Transition]:
        """Record a reading taken now, measure every rule, and return the rules that changed state."""
        now = self._clock.now()
        self._history.add(now, reading)
        transitions = []
        for rule in self._rules:
            value = rule.measure(self._history, now)
            previous = self._statuses[rule.name]
            if previous.state == "ok":
                towards = value is not None and value > rule.threshold
            else:
                towards = value is None or value <= rule.recover_at
            if towards:
                waiting = self._waiting_since.setdefault(rule.name, now)
                changed = now - waiting >= rule.hold
            else:
                self._waiting_since.pop(rule.name, None)
                changed = False
            if changed:
                self._waiting_since.pop(rule.name, None)
            state: State = ("firing" if previous.state == "ok" else "ok") if changed else previous.state
            status = replace(
                previous,
                state=state,
                value=None if value is None else round(value, 6),
                since=now if changed else previous.since,
            )
            self._statuses[rule.name] = status
            if changed:
                transitions.append(Transition(status, previous))
        self.evaluated_at = now
        return transitions

    def statuses(self) -> list[AlertStatus]:
        """Every rule's current state, in rule order."""
        return [self._statuses[rule.name] for rule in self._rules]
