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

import threading
from collections.abc import Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import names

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
    them, or reports them through its opt-in internal metrics)."""

    def __init__(self, exporter: SpanExporter, tally: DropTally = DROPS) -> None:
        super().__init__(CountingSpanExporter(exporter, tally))
        self._tally = tally
        # A bounded deque (opentelemetry-sdk 1.45): appending to it when full drops the oldest span.
        self._queue = getattr(self._batch_processor, "_queue", None)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        if (
            queue is not None
            and span.context is not None
            and span.context.trace_flags.sampled
            and len(queue) == queue.maxlen
        ):
            self._tally.add(SPANS)
        super().on_end(span)
