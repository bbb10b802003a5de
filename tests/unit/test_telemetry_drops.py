"""Spans the batch processor gives up on are counted: pushed out of its full queue, or in a failed export."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from market.telemetry.drops import SPANS, CountingBatchSpanProcessor, DropTally

QUEUE, BATCH = 32, 8


class HungExporter(SpanExporter):
    """Holds the first batch until released, like a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class FailingExporter(SpanExporter):
    def __init__(self, raises: bool = False) -> None:
        self.raises = raises

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.raises:
            raise ConnectionError("collector gone")
        return SpanExportResult.FAILURE


@pytest.fixture(autouse=True)
def small_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(QUEUE))
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", str(BATCH))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")


def _spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("test")
    for i in range(count):
        tracer.start_span(f"span {i}").end()


def test_spans_pushed_out_of_a_full_queue_are_counted():
    tally, exporter = DropTally(), HungExporter()
    processor = CountingBatchSpanProcessor(exporter, tally)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _spans(provider, 1)
    assert exporter.entered.wait(5), "the worker never called the exporter"
    _spans(provider, 100)  # the worker is stuck on the first batch: the queue holds QUEUE of them
    assert tally.totals()[SPANS] == 100 - QUEUE
    exporter.release.set()
    processor.shutdown()
    assert exporter.exported == 1 + QUEUE


@pytest.mark.parametrize("raises", [False, True], ids=["failure", "exception"])
def test_spans_of_a_failed_export_are_counted(raises):
    tally = DropTally()
    processor = CountingBatchSpanProcessor(FailingExporter(raises), tally)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _spans(provider, 20)
    processor.force_flush()
    processor.shutdown()
    assert tally.totals() == {SPANS: 20, "sentry_events": 0, "session": 0}


def test_a_full_queue_keeps_the_newest_spans_and_warns_once(caplog: pytest.LogCaptureFixture):
    tally, exporter = DropTally(), HungExporter()
    names: list[str] = []
    exporter_export = exporter.export

    def export(spans: Sequence[ReadableSpan]) -> SpanExportResult:
        names.extend(span.name for span in spans)
        return exporter_export(spans)

    exporter.export = export  # type: ignore[method-assign]
    processor = CountingBatchSpanProcessor(exporter, tally)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _spans(provider, 1)
    assert exporter.entered.wait(5), "the worker never called the exporter"
    with caplog.at_level(logging.INFO):
        _spans(provider, 100)
    exporter.release.set()
    processor.shutdown()
    assert names == ["span 0", *(f"span {i}" for i in range(100 - QUEUE, 100))]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "span queue full" in warnings[0].getMessage()


class RecordingExporter(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.exported = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append([span.name for span in spans])
        self.exported.set()
        return SpanExportResult.SUCCESS


def test_a_full_batch_wakes_the_exporter_and_goes_out_oldest_first(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only a full batch (or shutdown) sends
    exporter = RecordingExporter()
    tally = DropTally()
    processor = CountingBatchSpanProcessor(exporter, tally)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _spans(provider, BATCH - 1)
    assert not exporter.exported.wait(0.3)  # one short of a batch: the worker sleeps on
    tracer = provider.get_tracer("test")
    tracer.start_span("last").end()  # the batch's last span
    assert exporter.exported.wait(5)
    assert exporter.batches[0] == [f"span {i}" for i in range(BATCH - 1)] + ["last"]
    provider.shutdown()
    assert tally.totals()[SPANS] == 0


def test_unsampled_spans_are_not_queued():
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = RecordingExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    processor = CountingBatchSpanProcessor(exporter, DropTally())
    provider.add_span_processor(processor)
    _spans(provider, BATCH * 2)
    assert len(processor._queue) == 0
    provider.shutdown()
    assert exporter.batches == []
