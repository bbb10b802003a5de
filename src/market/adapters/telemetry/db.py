"""Every database statement, on both engines: a `db.client.operation.duration` measurement (always, traced
or not: the DB latency signal must not depend on sampling) and, inside a traced operation, a CLIENT span named
`{operation} {table}` (the stable DB semantic conventions' `db.query.summary`).

Statements outside any trace (start-up migrations, background polling) make no spans: a root trace per
poll would bury the interesting ones in Jaeger. The query text keeps its placeholders; parameter values
are never recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from functools import lru_cache
from typing import Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.querystring import QueryString

from market.telemetry import names
from market.telemetry.metrics import NO_EXEMPLAR, histogram

MAX_QUERY_TEXT = 2000

_T = TypeVar("_T")

_WORD = re.compile(r'"[^"]*"|[A-Za-z_][A-Za-z0-9_.$]*(?:\."[^"]*")?|[()]')
_DML = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})
# After these keywords comes the statement's first table (its db.collection.name).
_TABLE_AFTER = {"SELECT": "FROM", "DELETE": "FROM", "INSERT": "INTO", "MERGE": "INTO", "UPDATE": None}
_DDL_OBJECTS = frozenset({"TABLE", "INDEX", "VIEW", "TRIGGER", "SEQUENCE"})


@lru_cache(maxsize=1024)
def summarize(sql: str) -> tuple[str, str | None]:
    """(db.operation.name, db.collection.name or None) of one statement, from its text with placeholders.

    The operation is the statement's verb (for `WITH ...` the main statement's); the table is the first one
    the statement reads or writes (`FROM`, `INTO`, `UPDATE` at the top level, not inside a subquery). A name
    the statement's `WITH` defines is no table: it stands for the first table that common table expression's
    own body reads or writes (none for a recursive one). A bounded cache: statements are templates written in
    code, so the set is small."""
    tokens = _WORD.findall(sql)
    if not tokens:
        return "QUERY", None
    return _summarize(tokens, {})


_CTE_BEFORE_BODY = frozenset({"AS", "MATERIALIZED"})  # `name AS [NOT] [MATERIALIZED] (body)`
_NOT_A_CTE_NAME = frozenset({"WITH", "RECURSIVE", "AS", "NOT", "MATERIALIZED"})


def _summarize(tokens: list[str], ctes: dict[str, list[str] | None]) -> tuple[str, str | None]:
    """`summarize` of a token list; `ctes` maps the lower-cased names of the common table expressions in scope
    to their bodies' tokens (None: being resolved, so a recursive reference names no table)."""
    ctes = dict(ctes)
    first = tokens[0].upper()
    depth = 0
    operation = first
    expect: str | None = None
    seen_verb = first != "WITH"
    name: str | None = None  # the last top-level word of the WITH clause, a CTE's name once AS follows
    body_of: str | None = None  # the CTE whose `AS (` was just read
    body_start = 0
    previous = ""
    for index, token in enumerate(tokens):
        if token == "(":
            if not depth and not seen_verb and body_of is None and previous in _CTE_BEFORE_BODY and name:
                body_of, body_start = name.lower(), index + 1
            depth += 1
            continue
        if token == ")":
            depth -= 1
            if not depth and body_of is not None:
                ctes[body_of] = tokens[body_start:index]
                body_of = name = None
            continue
        if depth:
            continue
        word = token.upper()
        if not seen_verb:
            if word in _DML and index:
                operation, seen_verb = word, True
                expect = _TABLE_AFTER[word]
                if expect is None:
                    return operation, _resolve(_table(tokens, index + 1), ctes)
            elif word not in _NOT_A_CTE_NAME:
                name = token.replace('"', "")
            previous = word
            continue
        if index == 0:
            if word in _DML:
                expect = _TABLE_AFTER[word]
                if expect is None:
                    return operation, _resolve(_table(tokens, 1), ctes)
                continue
            if word in {"CREATE", "DROP", "ALTER", "TRUNCATE"}:
                return operation, _ddl_table(tokens)
            return operation, None  # BEGIN, COMMIT, SET, PRAGMA, SAVEPOINT, ...
        if expect is not None and word == expect:
            return operation, _resolve(_table(tokens, index + 1), ctes)
    return operation, None


def _resolve(table: str | None, ctes: dict[str, list[str] | None]) -> str | None:
    """The table itself, or for the name of a common table expression the table its body is about."""
    if table is None or table.lower() not in ctes:
        return table
    body = ctes[table.lower()]
    if not body:
        return None
    return _summarize(body, {**ctes, table.lower(): None})[1]


def _table(tokens: list[str], index: int) -> str | None:
    if index >= len(tokens) or tokens[index] in "()":
        return None
    name = tokens[index]
    if name.upper() == "ONLY" and index + 1 < len(tokens):
        name = tokens[index + 1]
    return name.replace('"', "") or None


def _ddl_table(tokens: list[str]) -> str | None:
    """The table a DDL statement is about (for an index, the table after ON, not the index's name)."""
    upper = [t.upper() for t in tokens[:12]]
    if "INDEX" in upper and "ON" in upper:
        return _table(tokens, upper.index("ON") + 1)
    for index, token in enumerate(tokens[:8]):
        if token.upper() in _DDL_OBJECTS:
            rest = [
                t for t in tokens[index + 1 : index + 6] if t.upper() not in {"IF", "NOT", "EXISTS", "ON"}
            ]
            return rest[0].replace('"', "") if rest and rest[0] not in "()" else None
    return None


class _Statement:
    """What every run of one statement records, built once per statement text: the metric's attributes, the
    span's name and attributes. Shared by every run (the SDK copies what it keeps); never mutated."""

    __slots__ = ("metric_attributes", "span_attributes", "span_name")

    def __init__(self, sql: str, system: str, namespace: str) -> None:
        operation, table = summarize(sql)
        self.metric_attributes: dict[str, Any] = {
            names.DB_SYSTEM_NAME: system,
            names.DB_OPERATION_NAME: operation,
            names.DB_NAMESPACE: namespace,
        }
        if table:
            self.metric_attributes[names.DB_COLLECTION_NAME] = table
        self.span_name = f"{operation} {table}" if table else operation
        self.span_attributes: dict[str, Any] = {
            **self.metric_attributes,
            names.DB_QUERY_SUMMARY: self.span_name,
            names.DB_QUERY_TEXT: " ".join(sql.split())[:MAX_QUERY_TEXT],
        }


class DbSpans:
    """Names, attributes and the duration histogram shared by every statement of one database."""

    MAX_STATEMENTS = 1024
    """Statements are templates written in code (a small set); past this many the cache starts over."""

    def __init__(self, system: str, namespace: str, duration: Histogram | None = None) -> None:
        """`duration`: the service's `db.client.operation.duration` (Instruments); by default one made through
        the global meter (the proxy until telemetry is installed, then the worker's provider)."""
        self.system = system  # "postgresql" or "sqlite"
        self.namespace = namespace
        self._tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE)
        self._duration = duration or histogram(
            metrics.get_meter(names.INSTRUMENTATION_SCOPE), names.DB_CLIENT_OPERATION_DURATION
        )
        self._statements: dict[str, _Statement] = {}

    @staticmethod
    def wanted() -> bool:
        return trace.get_current_span().is_recording()

    def described(self, sql: str) -> _Statement:
        """The statement's names and attributes (cached per text)."""
        found = self._statements.get(sql)
        if found is None:
            found = _Statement(sql, self.system, self.namespace)
            if len(self._statements) >= self.MAX_STATEMENTS:
                self._statements.clear()
            self._statements[sql] = found
        return found

    async def traced(self, sql: str, operation: Awaitable[_T]) -> _T:
        """`operation` (the statement `sql` running) awaited, measured and spanned, for a statement inside a
        traced operation (`wanted()`): a coroutine rather than a context manager, whose generator and enter and
        exit calls every statement of every sampled request paid."""
        described = self.described(sql)
        attributes = described.metric_attributes
        started = time.perf_counter()
        # A child of the current span, not made current itself: a statement starts no spans of its own, so
        # attaching and detaching a context per statement would be pure cost. (A log line written during the
        # statement carries the enclosing span's id.)
        span = self._tracer.start_span(
            described.span_name,
            kind=SpanKind.CLIENT,
            attributes=described.span_attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        try:
            return await operation
        except Exception as exc:
            _failed(span, exc)
            attributes = {**attributes, names.ERROR_TYPE: type(exc).__qualname__}
            raise
        finally:
            span.end()
            # Without the trace in the context: no exemplar offered per statement (a cost every request would
            # pay); the request-duration histogram carries the exemplars that lead to traces.
            self._duration.record(time.perf_counter() - started, attributes, context=NO_EXEMPLAR)

    async def measured(self, sql: str, operation: Awaitable[_T]) -> _T:
        """`operation` (the statement `sql` running) awaited and measured, for a statement outside any traced
        operation (telemetry off, or the request not sampled): the same measurement as `traced`, with the same
        attributes, and no span."""
        attributes = self.described(sql).metric_attributes
        started = time.perf_counter()
        try:
            return await operation
        except Exception as exc:
            attributes = {**attributes, names.ERROR_TYPE: type(exc).__qualname__}
            raise
        finally:
            self._duration.record(time.perf_counter() - started, attributes, context=NO_EXEMPLAR)


def _failed(span: Span, exc: Exception) -> None:
    span.record_exception(exc)
    span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        span.set_attribute(names.DB_RESPONSE_STATUS_CODE, sqlstate)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


class _TracedQueries:
    """Wraps the two methods every Piccolo query goes through."""

    db_spans: DbSpans
    engine_type: str

    async def run_querystring(self, querystring: QueryString, in_pool: bool = True) -> Any:
        # Raw SQL (Database.fetch) carries its whole text in the template; an ORM query's template is
        # made of sub-strings, compiled here only for its text (Piccolo compiles it again to run it).
        sql = querystring.template
        if DbSpans.wanted():
            sql, _ = querystring.compile_string(engine_type=self.engine_type)
            return await self.db_spans.traced(sql, super().run_querystring(querystring, in_pool))  # type: ignore[misc]
        if sql.lstrip().startswith("{"):
            sql, _ = querystring.compile_string(engine_type=self.engine_type)
        return await self.db_spans.measured(sql, super().run_querystring(querystring, in_pool))  # type: ignore[misc]

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        if DbSpans.wanted():
            return await self.db_spans.traced(ddl, super().run_ddl(ddl, in_pool))  # type: ignore[misc]
        return await self.db_spans.measured(ddl, super().run_ddl(ddl, in_pool))  # type: ignore[misc]


class TracedPostgresEngine(_TracedQueries, PostgresEngine):
    pass


class TracedSQLiteEngine(_TracedQueries, SQLiteEngine):
    pass
