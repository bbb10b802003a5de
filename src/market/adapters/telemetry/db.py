"""A CLIENT span for every database statement run on behalf of a traced operation, on both engines.

Statements outside any trace (start-up migrations, background polling) make no spans: a root trace per
poll would bury the interesting ones in Jaeger. The query text keeps its placeholders; parameter values
are never recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.querystring import QueryString

from market.telemetry import names

MAX_QUERY_TEXT = 2000


class DbSpans:
    """Names and attributes shared by every statement of one database."""

    def __init__(self, system: str, namespace: str) -> None:
        self.system = system  # "postgresql" or "sqlite"
        self.namespace = namespace
        self._tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE)

    @staticmethod
    def wanted() -> bool:
        return trace.get_current_span().is_recording()

    @contextmanager
    def statement(self, sql: str) -> Iterator[Span]:
        operation = sql.lstrip(" (\n").split(None, 1)[0].upper() if sql.strip() else "QUERY"
        attributes = {
            names.DB_SYSTEM_NAME: self.system,
            names.DB_OPERATION_NAME: operation,
            names.DB_QUERY_TEXT: " ".join(sql.split())[:MAX_QUERY_TEXT],
            names.DB_NAMESPACE: self.namespace,
        }
        with self._tracer.start_as_current_span(
            f"{operation} {self.namespace}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise


class _TracedQueries:
    """Wraps the two methods every Piccolo query goes through."""

    db_spans: DbSpans
    engine_type: str

    async def run_querystring(self, querystring: QueryString, in_pool: bool = True) -> Any:
        if not DbSpans.wanted():
            return await super().run_querystring(querystring, in_pool)  # type: ignore[misc]
        sql, _ = querystring.compile_string(engine_type=self.engine_type)
        with self.db_spans.statement(sql):
            return await super().run_querystring(querystring, in_pool)  # type: ignore[misc]

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        if not DbSpans.wanted():
            return await super().run_ddl(ddl, in_pool)  # type: ignore[misc]
        with self.db_spans.statement(ddl):
            return await super().run_ddl(ddl, in_pool)  # type: ignore[misc]


class TracedPostgresEngine(_TracedQueries, PostgresEngine):
    pass


class TracedSQLiteEngine(_TracedQueries, SQLiteEngine):
    pass
