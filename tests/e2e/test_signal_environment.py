"""The standard OTEL_* variables as an operator sets them, on `market serve` (SQLite: nothing here depends on
the engine): the SDK switched off still gives Sentry the reference the client got, and the console exporters
write to stderr so that every stdout line stays a JSON log line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer, auth, start_server, stop_server
from tests.support.servers.telemetry_receivers import SentryReceiver

from .helpers import create_admin, trace_id_of


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    receiver = SentryReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _serve(tmp_path: Path, env: dict[str, str], stderr_log: Path | None = None) -> LiveServer:
    return start_server(f"sqlite:///{tmp_path / 'market.db'}", tmp_path, "sqlite", env, stderr_log=stderr_log)


def test_with_the_sdk_disabled_the_sentry_event_carries_the_reference_the_client_got(tmp_path, sentry):
    server = _serve(tmp_path, {"OTEL_SDK_DISABLED": "true", "SENTRY_DSN": sentry.dsn})
    try:
        with server.client() as c:
            admin = create_admin(server, c)
            r = c.post("/api/v1/admin/test-monitoring", json={"kind": "error"}, headers=auth(admin))
    finally:
        stop_server(server)
    assert r.status_code == 500
    reference = trace_id_of(r)
    assert r.json()["trace_id"] == reference and reference != "0" * 32
    events = sentry.wait_for_events(lambda events: len(events) >= 1, what="the 500's event")
    (event,) = events
    assert event["contexts"]["trace"]["trace_id"] == reference
    assert event["event_id"] == r.json()["sentry_event_id"]
    assert event["transaction"] == "POST /api/v1/admin/test-monitoring"


def test_console_exporters_write_to_stderr_and_stdout_stays_json(tmp_path):
    stderr_log = tmp_path / "stderr.log"
    server = _serve(
        tmp_path,
        {
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "console",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "MARKET_LOG_LEVEL": "INFO",
        },
        stderr_log=stderr_log,
    )
    try:
        with server.client() as c:
            r = c.get("/api/v1/items")
            assert r.status_code == 200
            reference = trace_id_of(r)
    finally:
        stop_server(server)
    stdout_lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    assert stdout_lines, "no log line on stdout"
    for line in stdout_lines:
        json.loads(line)  # every stdout line is a JSON log line
    err = stderr_log.read_text()
    assert reference in err, "the request's span was not printed to stderr"
    assert "http.server.request.duration" in err, "the console metric exporter did not print to stderr"
