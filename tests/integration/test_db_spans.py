"""Every database statement of a traced operation is a CLIENT child span, on both engines, with the query
text's placeholders and never its parameter values."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from market.adapters.db.database import Database
from market.adapters.db.tables import UserRow
from market.config import DatabaseSettings, DatabaseURL
from market.telemetry import names

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
        assert span.name == f"SELECT {db.name}"
        text = span.attributes[names.DB_QUERY_TEXT]
        assert "users" in text and ("$1" in text or "?" in text)
        assert SECRET_VALUE not in str(dict(span.attributes))


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
