"""`backup.create` is an INTERNAL span, and every run is counted in market.backup.runs by outcome, with
market.backup.last_success holding the time of the last good one (in-memory providers, no globals)."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from market.config import DatabaseURL
from market.ops.backups.errors import BackupError
from market.ops.backups.service import BackupService
from market.telemetry import names
from tests.support.backups import seed

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def _metrics(reader: InMemoryMetricReader) -> dict[str, list]:
    found: dict[str, list] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
                found[metric.name + ":meta"] = [metric.unit, metric.description]
    return found


def test_create_is_traced_and_counted_by_outcome(database_url: str, engine: str, tmp_path: Path):
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    service = BackupService(
        DatabaseURL.parse(database_url),
        tmp_path / "backups",
        clock=lambda: NOW,
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    seed(database_url, items=20)

    info = asyncio.run(service.create())
    with pytest.raises(BackupError, match="already exists"):  # the same second again: refused, counted
        asyncio.run(service.create())

    ok, failed = spans.get_finished_spans()
    assert ok.name == failed.name == names.SPAN_BACKUP_CREATE
    assert ok.kind == SpanKind.INTERNAL
    assert ok.attributes[names.BACKUP_OUTCOME] == "success"
    assert ok.attributes[names.BACKUP_SIZE] == info.size
    assert ok.attributes[names.DB_SYSTEM_NAME] == engine
    assert failed.attributes[names.BACKUP_OUTCOME] == "failure"
    assert failed.status.status_code == StatusCode.ERROR
    assert any(event.name == "exception" for event in failed.events)

    metrics = _metrics(reader)
    runs = {p.attributes[names.BACKUP_OUTCOME]: p.value for p in metrics[names.BACKUP_RUNS[0]]}
    assert runs == {"success": 1, "failure": 1}
    (last,) = metrics[names.BACKUP_LAST_SUCCESS[0]]
    assert last.value == NOW.timestamp()
    assert metrics[names.BACKUP_LAST_SUCCESS[0] + ":meta"] == list(names.BACKUP_LAST_SUCCESS[1:])


def test_a_create_run_as_a_job_pushes_its_span_and_metrics_over_otlp(fresh_sqlite_url: str, tmp_path: Path):
    """A CronJob cannot be scraped: `market backup create` exports to OTEL_EXPORTER_OTLP_ENDPOINT itself."""
    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    seed(fresh_sqlite_url, items=20)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "MARKET_DATABASE_URL": fresh_sqlite_url,
            "MARKET_BACKUP_DIR": str(tmp_path / "backups"),
            "MARKET_VAR_DIR": str(tmp_path / "var"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "market", "backup", "create"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr

    metric_names, span_names = set(), set()
    for path, body in received:
        if path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            metric_names |= {
                m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            }
        elif path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            span_names |= {s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert {names.BACKUP_RUNS[0], names.BACKUP_LAST_SUCCESS[0]} <= metric_names
    assert names.SPAN_BACKUP_CREATE in span_names
