"""In-process alerting for the embedded default, where no Prometheus evaluates the alert rules: the same
conditions, computed here over sliding windows of the service's own cumulative metrics.

Plain logic, no I/O. An `AlertEvaluator` is fed `Reading`s — the cumulative figures Prometheus would scrape —
stamps each with its injected clock, keeps them in a ring buffer as long as the longest window needs, and on
every `observe()` measures each rule over its window and returns the state changes (`Transition`s). Reading
the metrics, the schedule and the notifications live in `market.ops.alerting`.

A windowed increase is Prometheus's `increase()` without its extrapolation: the sum of the rises between
consecutive readings, from the last reading at or before the window's start to the newest (a counter that goes
down was reset, by a restarted worker, and counts from zero again). A window thus covers its length plus at
most one evaluation interval; until the service has run that long, it covers what there is.

The rules (strict thresholds; a window without traffic measures nothing: value null, state ok):

| name | severity | value | fires when | PromQL equivalent |
|---|---|---|---|---|
| `high_error_rate` | critical | share of HTTP responses that were 5xx, last 5 min | > 0.05 | `sum(rate(http_server_request_duration_seconds_count{http_response_status_code=~"5.."}[5m])) / sum(rate(…_count[5m]))` |
| `payment_failures` | critical | share of payment attempts whose outcome was not `succeeded`, last 5 min | > 0.10 | `market_payment_attempts_total` |
| `slow_api` | warning | p95 of the request duration in seconds, **all routes together**, last 5 min | > 2 | `histogram_quantile(0.95, sum by (le) (rate(…_bucket[5m])))` |
| `webhook_failures` | critical | share of webhook deliveries that failed, both directions, last 15 min | > 0.01 | `market_webhook_deliveries_total` |
| `backup_stale` | critical | seconds since the last successful backup | > 26 h | `time() - market_backup_last_success_seconds` |

`slow_api` is overall rather than per route: one number per rule (the API lists one state per rule), and a
route with a handful of requests cannot page anyone on its own. `webhook_failures` counts outbound seller
deliveries and authentic inbound provider events we failed to handle: both are "webhooks are not getting
through" on our side. Posts that fail authentication (`market.webhook.rejected`) are not deliveries at all:
anyone can send one, and one stranger must not page on-call. `backup_stale` applies only when backups are expected — a daily schedule is configured, or a backup has
succeeded at least once; with a schedule and no backup yet, the age counts from when evaluation began.
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
    """HTTP responses sent."""
    server_errors: float = 0.0
    """Of which 5xx."""
    duration_buckets: Mapping[float, float] = field(default_factory=dict)
    """Request durations: upper bound in seconds (`math.inf` included) -> cumulative count, as in `le`."""
    payment_attempts: float = 0.0
    payment_failures: float = 0.0
    """Payment attempts whose outcome was not `succeeded` (declined or error)."""
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

    def bucket_increases(self, window: timedelta, now: datetime) -> dict[float, float]:
        readings = self.span(window, now)
        bounds = sorted({bound for reading in readings for bound in reading.duration_buckets})
        return {
            bound: rise(reading.duration_buckets.get(bound, 0.0) for reading in readings) for bound in bounds
        }


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
    unit: Unit
    description: str

    def measure(self, history: History, now: datetime) -> float | None:
        """The rule's value now; None when there is nothing to measure (then it does not fire)."""


def _counter(name: str) -> Counter:
    def read(reading: Reading) -> float:
        return getattr(reading, name)

    return read


@dataclass(frozen=True, slots=True)
class RatioRule:
    """`part` / `whole` of two counters' increases over the window; None when `whole` did not move."""

    name: str
    severity: Severity
    threshold: float
    window: timedelta
    part: str
    whole: str
    description: str
    unit: Unit = "ratio"

    def measure(self, history: History, now: datetime) -> float | None:
        whole = history.increase(_counter(self.whole), self.window, now)
        if whole <= 0:
            return None
        return history.increase(_counter(self.part), self.window, now) / whole


@dataclass(frozen=True, slots=True)
class QuantileRule:
    """A quantile of the request durations over the window, all routes together."""

    name: str
    severity: Severity
    threshold: float
    window: timedelta
    quantile: float
    description: str
    unit: Unit = "s"

    def measure(self, history: History, now: datetime) -> float | None:
        return histogram_quantile(self.quantile, history.bucket_increases(self.window, now))


@dataclass(frozen=True, slots=True)
class StalenessRule:
    """Seconds since the last successful backup, when backups are expected: `scheduled`, or one succeeded."""

    name: str
    severity: Severity
    threshold: float
    scheduled: bool
    description: str
    window: timedelta = timedelta(0)
    unit: Unit = "s"

    def measure(self, history: History, now: datetime) -> float | None:
        latest = history.latest
        last = latest.backup_last_success if latest is not None else None
        if last is not None:
            return max(0.0, now.timestamp() - last)
        if self.scheduled and history.started is not None:
            return (now - history.started).total_seconds()
        return None


def default_rules(*, backups_scheduled: bool) -> list[Rule]:
    """The rules of the Prometheus alerting rules, with their windows and thresholds."""
    five_minutes = timedelta(minutes=5)
    return [
        RatioRule(
            name="high_error_rate",
            severity="critical",
            threshold=0.05,
            window=five_minutes,
            part="server_errors",
            whole="requests",
            description="Share of HTTP responses that were 5xx over the last 5 min.",
        ),
        RatioRule(
            name="payment_failures",
            severity="critical",
            threshold=0.10,
            window=five_minutes,
            part="payment_failures",
            whole="payment_attempts",
            description="Share of payment attempts that did not succeed (declined or error) over the last 5 min.",
        ),
        QuantileRule(
            name="slow_api",
            severity="warning",
            threshold=2.0,
            window=five_minutes,
            quantile=0.95,
            description="95th percentile of the HTTP request duration in seconds, all routes together, "
            "over the last 5 min.",
        ),
        RatioRule(
            name="webhook_failures",
            severity="critical",
            threshold=0.01,
            window=timedelta(minutes=15),
            part="webhook_failures",
            whole="webhook_deliveries",
            description="Share of webhook deliveries (outbound to sellers, and authentic inbound events from "
            "the payment provider) that failed over the last 15 min; unauthenticated posts are not counted.",
        ),
        StalenessRule(
            name="backup_stale",
            severity="critical",
            threshold=26 * 3600.0,
            scheduled=backups_scheduled,
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
        self.evaluated_at: datetime | None = None

    def observe(self, reading: Reading) -> list[Transition]:
        """Record a reading taken now, measure every rule, and return the rules that changed state."""
        now = self._clock.now()
        self._history.add(now, reading)
        transitions = []
        for rule in self._rules:
            value = rule.measure(self._history, now)
            state: State = "firing" if value is not None and value > rule.threshold else "ok"
            previous = self._statuses[rule.name]
            changed = state != previous.state
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
