"""Counters and histograms the service aggregates itself: the ones requests record.

The SDK's synchronous instruments run ≈ 80 Python calls per measurement (a `Measurement` whose attribute values
are cleaned again, the attributes sorted and hashed, the exemplar filter's context lookup, the aggregation's
lock): taking the two histogram measurements of a browse request away took ≈ 40 µs of CPU off a ≈ 300 µs request,
and a checkout makes one per statement (benchmarks/README.md). Here a measurement finds its series by the
identity of its attribute dict (callers record a few cached dicts) and, for a histogram, its bucket by bisection.
`SharedMetricReader` adds these to every collection as the SDK's own data classes, so /metrics and the OTLP
export see one metric, whoever aggregated it.

The SDK's semantics with cumulative temporality: a histogram value on a boundary counts in the bucket that
boundary closes (`bisect_left`), with sum, min and max; a counter refuses a negative amount; a cardinality limit
with the overflow series; and the latest exemplar of a sampled trace (the SDK's trace-based exemplar filter)
per histogram bucket, or per counter series.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, NumberDataPoint, Sum
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.export import Metric as MetricData
from opentelemetry.trace import get_current_span

from . import names

log = logging.getLogger(__name__)

OVERFLOW = {"otel.metric.overflow": True}
"""The series past the cardinality limit, as the SDK names it."""
_OVERFLOW_KEY = frozenset(OVERFLOW.items())

Attributes = dict[str, Any] | None


class _Local:
    """Series by attributes, found by the attribute dict's identity; what a series holds is the subclass's."""

    MAX_SERIES = 2000
    """The SDK's default cardinality limit: past it, measurements go to the overflow series."""
    MAX_ALIASES = 4096
    """Attribute dicts remembered by identity; a caller building a new dict per measurement only fills this (it
    is then cleared and starts over) and pays a hash of its attributes per measurement, as with the SDK."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._series: dict[frozenset[tuple[str, Any]], Any] = {}
        # id(attribute dict) -> (that dict, its series): the dict is held, so its id names no other object.
        self._aliases: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()  # records come from the event loop's thread and from worker threads
        self._start_ns = time.time_ns()

    def _new_series(self, attributes: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _series_of(self, attributes: Attributes) -> Any:
        alias = self._aliases.get(id(attributes))
        if alias is not None:
            return alias[1]
        key = frozenset(attributes.items()) if attributes else frozenset()
        with self._lock:
            series = self._series.get(key)
            if series is None:
                kept = dict(attributes or {})  # exported as first seen, whatever the caller does later
                if len(self._series) >= self.MAX_SERIES:
                    key, kept = _OVERFLOW_KEY, dict(OVERFLOW)
                    series = self._series.get(key)
                if series is None:
                    series = self._series[key] = self._new_series(kept)
            if len(self._aliases) >= self.MAX_ALIASES:
                self._aliases.clear()
            self._aliases[id(attributes)] = (attributes, series)
        return series

    @staticmethod
    def _exemplar(amount: float, context: Context | None) -> Exemplar | None:
        """An exemplar when the context's span (the current one when None) is sampled."""
        if context is not None and names.NO_EXEMPLAR_KEY in context:
            return None
        span_context = get_current_span(context).get_span_context()
        if not span_context.trace_flags.sampled:
            return None
        return Exemplar(None, amount, time.time_ns(), span_context.span_id, span_context.trace_id)

    def _point(self, series: Any, now: int) -> Any:
        raise NotImplementedError

    def _data(self, points: list[Any]) -> Any:
        raise NotImplementedError

    def collect(self) -> MetricData | None:
        """Every series so far (cumulative), or None before the first measurement."""
        now = time.time_ns()
        with self._lock:
            points = [self._point(series, now) for series in self._series.values()]
        if not points:
            return None
        return MetricData(
            name=self.name, description=self.description, unit=self.unit, data=self._data(points)
        )


class _Buckets:
    __slots__ = ("attributes", "counts", "exemplars", "max", "min", "sum")

    def __init__(self, attributes: dict[str, Any], buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: dict[int, Exemplar] = {}


class LocalHistogram(_Local, Histogram):
    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        _Local.__init__(self, name, unit, description)
        self.bounds = tuple(float(bound) for bound in bounds)

    def _new_series(self, attributes: dict[str, Any]) -> _Buckets:
        return _Buckets(attributes, len(self.bounds) + 1)

    def record(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        """`attributes`: a dict that does not change once recorded (its identity names its series)."""
        series = self._series_of(attributes)
        index = bisect_left(self.bounds, amount)
        with self._lock:
            series.counts[index] += 1
            series.sum += amount
            if amount < series.min:
                series.min = amount
            if amount > series.max:
                series.max = amount
        exemplar = self._exemplar(amount, context)
        if exemplar is not None:
            with self._lock:
                series.exemplars[index] = exemplar

    def _point(self, series: _Buckets, now: int) -> HistogramDataPoint:
        return HistogramDataPoint(
            attributes=series.attributes,
            start_time_unix_nano=self._start_ns,
            time_unix_nano=now,
            count=sum(series.counts),
            sum=series.sum,
            bucket_counts=list(series.counts),
            explicit_bounds=self.bounds,
            min=series.min,
            max=series.max,
            exemplars=[exemplar for _, exemplar in sorted(series.exemplars.items())],
        )

    def _data(self, points: list[Any]) -> HistogramData:
        return HistogramData(points, AggregationTemporality.CUMULATIVE)


class _Total:
    __slots__ = ("attributes", "exemplar", "value")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.value: float = 0
        self.exemplar: Exemplar | None = None


class LocalCounter(_Local, Counter):
    def __init__(self, name: str, unit: str, description: str) -> None:
        _Local.__init__(self, name, unit, description)

    def _new_series(self, attributes: dict[str, Any]) -> _Total:
        return _Total(attributes)

    def add(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        """`attributes`: a dict that does not change once recorded (its identity names its series). Adding 0
        makes the series exist at zero."""
        if amount < 0:
            log.warning("Add amount must be non-negative on Counter %s.", self.name)  # the SDK's warning
            return
        series = self._series_of(attributes)
        with self._lock:
            series.value += amount
        exemplar = self._exemplar(amount, context) if amount else None
        if exemplar is not None:
            series.exemplar = exemplar

    def _point(self, series: _Total, now: int) -> NumberDataPoint:
        return NumberDataPoint(
            attributes=series.attributes,
            start_time_unix_nano=self._start_ns,
            time_unix_nano=now,
            value=series.value,
            exemplars=[] if series.exemplar is None else [series.exemplar],
        )

    def _data(self, points: list[Any]) -> Sum:
        return Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
