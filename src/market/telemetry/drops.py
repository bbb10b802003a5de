"""Telemetry the service gave up on, counted: `market.telemetry.dropped` {market.telemetry.signal}.

Queues drop rather than grow or block when the collector or Sentry is down, slow or refusing (docs/TELEMETRY.md,
Resilience) — and a drop nobody can see is a hole in the data nobody can explain. Counted here:
- `spans`: spans pushed out of the full batch queue, and spans in a batch whose export failed (refused,
  timed out, rejected after the exporter's own retries);
- `sentry_events`: error and message events Sentry's transport lost (its queue full, network error, a 5xx,
  a 429 or the back-off that follows it);
- `session`: session replay entries the recorder's full buffer refused, or whose batch could not be written.

The exporter and transport threads add to one process-wide tally; an observable counter reads it at
collection time, so counting costs a lock and an add, and works before the meter provider exists.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import names

log = logging.getLogger(__name__)

SPANS = "spans"
SENTRY_EVENTS = "sentry_events"
SESSIONS = "session"


class DropTally:
    """Totals per signal since the process started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {SPANS: 0, SENTRY_EVENTS: 0, SESSIONS: 0}

    def add(self, signal: str, count: int = 1) -> None:
        if count > 0:
            with self._lock:
                self._totals[signal] = self._totals.get(signal, 0) + count

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Callback of the `market.telemetry.dropped` observable counter."""
        return [
            Observation(total, {names.TELEMETRY_SIGNAL: signal}) for signal, total in self.totals().items()
        ]


DROPS = DropTally()


class CountingSpanExporter(SpanExporter):
    """Delegates to the real exporter; a batch it fails to deliver is counted as dropped spans."""

    def __init__(self, inner: SpanExporter, tally: DropTally = DROPS) -> None:
        self._inner = inner
        self._tally = tally

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._tally.add(SPANS, len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            self._tally.add(SPANS, len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it pushes out of its full queue (the SDK only logs
    them, or reports them through its opt-in internal metrics).

    A full queue (the collector down or slower than the traffic) takes a span here, as the SDK would (the oldest
    one is pushed out), without the SDK's warning per span: each one built a log record only for a duplicate
    filter to throw it away, ≈ 4 µs per span on the request path for as long as the outage lasts. This warns at
    most once a minute instead, and the counter has every drop."""

    WARN_EVERY_S = 60.0

    def __init__(self, exporter: SpanExporter, tally: DropTally = DROPS) -> None:
        super().__init__(CountingSpanExporter(exporter, tally))
        self._tally = tally
        # A bounded deque (opentelemetry-sdk 1.45): appending to it when full drops the oldest span.
        self._queue = getattr(self._batch_processor, "_queue", None)
        self._pid = os.getpid()
        self._warned_at = -self.WARN_EVERY_S

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        context = span.context
        batch = self._batch_processor
        if (
            queue is None
            or context is None
            or not context.trace_flags.sampled
            or batch._shutdown
            or self._pid != os.getpid()
        ):
            super().on_end(span)  # the SDK's path: nothing to export, shut down, or a forked child
            return
        if len(queue) == queue.maxlen:
            self._tally.add(SPANS)
            queue.appendleft(span)  # pushes the oldest out; the worker is already awake
            self._warn_full()
            return
        # What the SDK's BatchSpanProcessor.on_end and its BatchProcessor.emit do from here, without their two
        # calls and second look at the span's context: every sampled span ends here.
        queue.appendleft(span)
        if len(queue) >= batch._max_export_batch_size and not batch._worker_awaken.is_set():
            batch._worker_awaken.set()

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "span queue full (%d): the collector is down or slower than the traffic; the oldest spans are "
                "dropped and counted in market.telemetry.dropped",
                self._queue.maxlen if self._queue is not None else 0,
            )
