"""Every database statement of a traced operation is a CLIENT child span, on both engines, with the query
text's placeholders and never its parameter values."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind

from market.adapters.db.database import Database
from market.adapters.db.tables import UserRow
from market.config import DatabaseSettings, DatabaseURL
from market.telemetry import names
from market.telemetry.metrics import histogram

SECRET_VALUE = "needle-that-must-not-leak@example.com"


async def _started(url: str) -> Database:
    db = Database(DatabaseSettings(url=DatabaseURL.parse(url)))
    await db.start()
    await db.migrate()
    return db


async def test_raw_and_orm_statements_are_client_children_of_the_current_span(database_url, span_exporter):
    db = await _started(database_url)
    try:
        with trace.get_tracer("test").start_as_current_span("parent") as parent:
            await db.fetch("SELECT id FROM users WHERE email = {}", SECRET_VALUE)
            await UserRow.select(UserRow.id).where(UserRow.email == SECRET_VALUE)
    finally:
        await db.close()
    spans = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(spans) == 2
    engine = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    for span in spans:
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.attributes[names.DB_SYSTEM_NAME] == engine
        assert span.attributes[names.DB_OPERATION_NAME] == "SELECT"
        assert span.attributes[names.DB_NAMESPACE] == db.name
        # Stable DB conventions: named by the query summary `{operation} {table}`, never the database.
        assert span.name == "SELECT users"
        assert span.attributes[names.DB_COLLECTION_NAME] == "users"
        assert span.attributes[names.DB_QUERY_SUMMARY] == "SELECT users"
        text = span.attributes[names.DB_QUERY_TEXT]
        assert "users" in text and ("$1" in text or "?" in text)
        assert SECRET_VALUE not in str(dict(span.attributes))


def _measured_apart(db: Database) -> InMemoryMetricReader:
    """A reader of this database's statements alone. The suite's process-wide meter holds the series of every
    test database (each its own db.namespace) and, past the SDK's 2 000 attribute sets per instrument, folds
    new ones into its overflow series: a test reading it would depend on how many ran before it."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter(names.INSTRUMENTATION_SCOPE)
    db.spans._duration = histogram(meter, names.DB_CLIENT_OPERATION_DURATION)
    return reader


def _db_durations(reader: InMemoryMetricReader) -> dict[tuple[tuple[str, Any], ...], tuple[int, float]]:
    """(count, sum) of db.client.operation.duration per attribute set, as collected now."""
    found: dict[tuple[tuple[str, Any], ...], tuple[int, float]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == names.DB_CLIENT_OPERATION_DURATION[0]:
                    assert metric.unit == "s"
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = (point.count, point.sum)
    return found


async def test_every_statement_is_measured_by_operation_and_table_traced_or_not(
    database_url, telemetry, span_exporter
):
    db = await _started(database_url)
    engine = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    expected = {
        names.DB_SYSTEM_NAME: engine,
        names.DB_OPERATION_NAME: "SELECT",
        names.DB_COLLECTION_NAME: "users",
        names.DB_NAMESPACE: db.name,
    }
    key = tuple(sorted(expected.items()))
    reader = _measured_apart(db)
    before = _db_durations(reader)
    try:
        await db.fetch("SELECT id FROM users WHERE email = {}", SECRET_VALUE)  # outside any trace
        with trace.get_tracer("test").start_as_current_span("parent"):
            await UserRow.select(UserRow.id).where(UserRow.email == SECRET_VALUE)
        with pytest.raises(Exception, match="no_such_column"):
            await db.fetch("SELECT no_such_column FROM users")
    finally:
        await db.close()
    after = _db_durations(reader)
    count_before, sum_before = before.get(key, (0, 0.0))
    count_after, sum_after = after[key]
    assert count_after - count_before == 2
    assert sum_after > sum_before
    # The failing statement is a series of its own, with error.type.
    failed = [k for k in after if dict(k).get(names.ERROR_TYPE) and dict(k)[names.DB_NAMESPACE] == db.name]
    assert len(failed) == 1 and after[failed[0]][0] - before.get(failed[0], (0, 0.0))[0] == 1
    assert SECRET_VALUE not in str(after)


async def test_statements_outside_any_trace_make_no_spans(database_url, span_exporter):
    db = await _started(database_url)
    try:
        await db.fetch("SELECT 1")
    finally:
        await db.close()
    assert not [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


async def test_a_failing_statement_marks_its_span_as_an_error(database_url, span_exporter):
    db = await _started(database_url)
    try:
        with (
            trace.get_tracer("test").start_as_current_span("parent"),
            pytest.raises(Exception, match="no_such_column"),
        ):
            await db.fetch("SELECT no_such_column FROM users")
    finally:
        await db.close()
    (span,) = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert not span.status.is_ok
    assert any(event.name == "exception" for event in span.events)
