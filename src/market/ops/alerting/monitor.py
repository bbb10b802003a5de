"""The alert monitor: a background task in every service process that reads the metrics every
MARKET_ALERT_EVAL_INTERVAL, runs the rules (`market.ops.alerting.rules`), logs each change of state and sends it
to the configured notifiers — once when a rule fires, once when it resolves, never on every evaluation.

Notifications leave through one queue per notifier, drained by its own task: an evaluation never waits for
Slack or SMTP, messages keep their order (a `resolved` never overtakes its `firing`), and a notifier that is down
costs a few retries and a log line, then the message is dropped. With `market serve --workers N` every worker
evaluates (each answers GET /admin/alerts from the same merged metrics), but only the holder of a lock file in
the var folder notifies, so a change is announced once; another worker takes over if that one exits.

Replicas (several `market serve` on several machines, MARKET_REDIS_URL set) share a lease in Redis instead: the
holder renews it at every evaluation, and notifies the changes of its own readings (a balancer spreads the
traffic evenly, so one replica's figures stand for the others'); when it stops renewing (stopped, killed,
cut off) another replica takes the lease within `RedisLease.ttl_s`. Alerts over the sum of every replica are
Prometheus's rules (infra/prometheus/rules.yaml), which scrape each replica.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from market.background import cancel_and_wait
from market.ops.alerting.rules import AlertEvaluator, AlertStatus, Reading, Transition
from market.private_files import private_dir

from .notifiers import AlertMessage, NotificationFailed, Notifier

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (1.0, 5.0)
"""Waits before the second and third attempt of a notification."""
QUEUE_SIZE = 100
"""Notifications waiting per notifier; when full, new ones are dropped (and logged)."""


class Lease(Protocol):
    """Who notifies. Blocking calls (the monitor runs them in a thread)."""

    def acquire(self) -> bool:
        """True when this process holds the lease (taken now, renewed, or already held)."""
        ...

    def release(self) -> None: ...


class FileLease:
    """An exclusive `flock` on a file, held until release or exit: the one process that notifies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when this process holds the lease (now or already)."""
        if self._fd is not None:
            return True
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            log.warning("cannot open the alert notifier lock; notifying anyway", exc_info=True)
            return True  # better twice than never
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """A key in Redis holding this process's random token for `ttl_s`: the one replica that notifies.
    Taken or renewed atomically (a Lua script); a Redis that cannot be reached means "notify anyway"."""

    def __init__(self, client: Any, key: str, ttl_s: float) -> None:
        self._client = client  # a synchronous redis.Redis (the monitor calls us from a thread)
        self.key = key
        self.ttl_s = ttl_s
        self._token = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: float) -> RedisLease:
        from redis import Redis

        client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return cls(client, f"{prefix}:alerts:notifier", ttl_s)

    def acquire(self) -> bool:
        try:
            return bool(self._renew(keys=[self.key], args=[self._token, int(self.ttl_s * 1000)]))
        except Exception:
            log.warning("cannot reach Redis for the alert notifier lease; notifying anyway", exc_info=True)
            return True  # better twice than never

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self._token])
        except Exception:
            log.warning("cannot release the alert notifier lease in Redis", exc_info=True)
        finally:
            self._client.close()


def format_value(value: float | None, status: AlertStatus) -> str:
    """A rule's value or threshold in words: a percentage for rates, hours or seconds for ages and durations."""
    if value is None:
        return "no data"
    if status.unit == "ratio":
        return f"{value * 100:.3g} %"
    if status.threshold >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value:.2f} s"


def _time(moment: datetime | None) -> str:
    return (
        "?" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def describe(transition: Transition, origin: str) -> AlertMessage:
    """The words of a notification: what changed, where, how bad, since when."""
    status = transition.status
    value, threshold = format_value(status.value, status), format_value(status.threshold, status)
    if transition.firing:
        head = f"[FIRING] {status.name} ({status.severity})"
        body = (
            f"{head} on {origin}: {value}, above the threshold of {threshold}, since {_time(status.since)}."
        )
    else:
        head = f"[RESOLVED] {status.name} ({status.severity})"
        body = (
            f"{head} on {origin}: now {value} (threshold {threshold}); "
            f"fired at {_time(transition.previous.since)}, resolved at {_time(status.since)}."
        )
    return AlertMessage(subject=head, text=f"{body}\n{status.description}")


class AlertMonitor:
    """Evaluates on a schedule and announces transitions. Also what GET /admin/alerts reads."""

    def __init__(
        self,
        evaluator: AlertEvaluator,
        read: Callable[[], Reading],
        *,
        interval_s: float,
        notifiers: Sequence[Notifier] = (),
        lease: Lease | None = None,
        origin: str = "market",
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        """`read` is blocking (it runs in a thread); `lease` None: this process always notifies."""
        self._evaluator = evaluator
        self._read = read
        self._interval_s = interval_s
        self._notifiers = tuple(notifiers)
        self._lease = lease
        self._origin = origin
        self._retry_delays_s = tuple(retry_delays_s)
        self._queues: list[asyncio.Queue[AlertMessage]] = [asyncio.Queue(queue_size) for _ in self._notifiers]
        self._tasks: list[asyncio.Task[None]] = []

    # --- what the HTTP endpoint reads ----------------------------------------------------------------

    def statuses(self) -> list[AlertStatus]:
        return self._evaluator.statuses()

    @property
    def evaluated_at(self) -> datetime | None:
        return self._evaluator.evaluated_at

    # --- evaluation ---------------------------------------------------------------------------------

    async def evaluate_once(self) -> list[Transition]:
        """Take a reading, run the rules, log and queue (if this process notifies) every change of state."""
        reading = await asyncio.to_thread(self._read)
        transitions = self._evaluator.observe(reading)
        # Renewed at every evaluation, so that the notifier stays the same process while it lives.
        notifies = bool(self._queues) and (
            self._lease is None or await asyncio.to_thread(self._lease.acquire)
        )
        if not transitions:
            return transitions
        for transition in transitions:
            status = transition.status
            log.log(
                logging.WARNING if transition.firing else logging.INFO,
                "alert firing" if transition.firing else "alert resolved",
                extra={
                    "alert": status.name,
                    "severity": status.severity,
                    "value": status.value,
                    "threshold": status.threshold,
                },
            )
        if notifies:
            for transition in transitions:
                message = describe(transition, self._origin)
                for notifier, queue in zip(self._notifiers, self._queues, strict=True):
                    try:
                        queue.put_nowait(message)
                    except asyncio.QueueFull:
                        log.error(
                            "alert notification dropped: queue full",
                            extra={"notifier": notifier.name, "alert": transition.status.name},
                        )
        return transitions

    async def _evaluate_forever(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except Exception:
                log.exception("alert evaluation failed; will try again")
            await asyncio.sleep(self._interval_s)

    # --- notification ---------------------------------------------------------------------------------

    async def _notify_forever(self, notifier: Notifier, queue: asyncio.Queue[AlertMessage]) -> None:
        while True:
            message = await queue.get()
            try:
                await self._deliver(notifier, message)
            finally:
                queue.task_done()

    async def _deliver(self, notifier: Notifier, message: AlertMessage) -> None:
        delays = (*self._retry_delays_s, None)
        for attempt, delay in enumerate(delays, start=1):
            try:
                await notifier.send(message)
            except NotificationFailed as exc:
                error = str(exc)
            except Exception as exc:  # a bug in one notifier must not stop the others
                log.exception("alert notifier failed unexpectedly", extra={"notifier": notifier.name})
                error = type(exc).__name__
            else:
                log.info(
                    "alert notification sent", extra={"notifier": notifier.name, "subject": message.subject}
                )
                return
            final = delay is None
            log.log(
                logging.ERROR if final else logging.WARNING,
                "alert notification failed" + ("; giving up" if final else "; will retry"),
                extra={
                    "notifier": notifier.name,
                    "subject": message.subject,
                    "attempt": attempt,
                    "error": error,
                },
            )
            if delay is not None:
                await asyncio.sleep(delay)

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the first reading at once (the baseline of every window), then one every interval."""
        self._tasks = [
            asyncio.create_task(self._notify_forever(notifier, queue), name=f"alert-notify-{notifier.name}")
            for notifier, queue in zip(self._notifiers, self._queues, strict=True)
        ]
        self._tasks.append(asyncio.create_task(self._evaluate_forever(), name="alert-evaluator"))

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the queued notifications to be sent (or given up on); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(queue.join() for queue in self._queues))
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stop evaluating; give queued notifications up to `grace_s` to go out, then drop them."""
        if self._tasks:
            self._tasks[-1].cancel()  # the evaluator: no new notifications
        await self.flush(grace_s)
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for notifier in self._notifiers:
            try:
                await asyncio.wait_for(notifier.close(), grace_s)
            except Exception:
                log.warning("alert notifier did not close cleanly", extra={"notifier": notifier.name})
        if self._lease is not None:
            await asyncio.to_thread(self._lease.release)
