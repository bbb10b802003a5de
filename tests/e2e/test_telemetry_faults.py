"""Resilience (docs/TELEMETRY.md): with the collector or Sentry down, hung or answering errors, every request still
succeeds, memory stays bounded (queues drop), the drops are counted in `market.telemetry.dropped` on /metrics,
and `market serve` stops within 5 s of SIGTERM.

Each scenario runs its own server on SQLite (the faults are in the exporters, not the database) with small
batch queues, so that a few hundred requests are enough to fill them.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from market.telemetry import drops, names
from market.telemetry.prometheus import prometheus_name
from tests.support.live_server import LiveServer, auth, start_server, stop_server
from tests.support.servers.telemetry_receivers import (
    Behaviour,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    SentryReceiver,
    refused_endpoint,
    wait_until,
)

from .helpers import create_admin

ROUNDS = 150
"""Requests per round; a third of them are 500s (each one a Sentry event)."""
SHUTDOWN_BOUND_S = 5.0
SENTRY_QUEUE = 100
"""sentry-sdk's `transport_queue_size` default."""
MEASURED_ROUNDS = 3
RSS_GROWTH_BOUND_KB = 5 * 1024
"""Once the queues are full, MEASURED_ROUNDS more rounds may not grow the process by more than this (noise
measured ≤ 2.5 MB; an unbounded Sentry queue alone would add its 150 events of ≥ 24 kB serialized each)."""
DROPPED = prometheus_name(names.TELEMETRY_DROPPED[0], names.TELEMETRY_DROPPED[1], "counter")
SIGNAL_LABEL = names.TELEMETRY_SIGNAL.replace(".", "_")


@dataclass(frozen=True)
class Fault:
    collector: Behaviour | None
    """None: nothing listens on the collector's port (connections refused)."""
    sentry: Behaviour
    otlp_timeout_s: int
    """OTEL_EXPORTER_OTLP_TIMEOUT (seconds): 1 makes a failed export show up fast; 10 is the SDK's default."""
    protocol: str = "http/protobuf"


FAULTS = {
    "collector-refusing_sentry-500": Fault(None, Behaviour.ERROR, otlp_timeout_s=1),
    "collector-hanging_sentry-hanging": Fault(Behaviour.HANG, Behaviour.HANG, otlp_timeout_s=10),
    "collector-500_sentry-429": Fault(Behaviour.ERROR, Behaviour.RATE_LIMITED, otlp_timeout_s=1),
    "grpc-collector-hanging_sentry-ok": Fault(
        Behaviour.HANG, Behaviour.OK, otlp_timeout_s=10, protocol="grpc"
    ),
}


@dataclass
class Faulty:
    server: LiveServer
    collector: OtlpHttpReceiver | OtlpGrpcReceiver
    sentry: SentryReceiver
    fault: Fault


@pytest.fixture(params=list(FAULTS))
def faulty(request: pytest.FixtureRequest, tmp_path) -> Iterator[Faulty]:
    fault = FAULTS[request.param]
    collector = (OtlpGrpcReceiver() if fault.protocol == "grpc" else OtlpHttpReceiver()).start()
    sentry = SentryReceiver().start()
    sentry.behave(fault.sentry)
    if fault.collector is None:
        collector.stop()
        endpoint = f"http://127.0.0.1:{refused_endpoint()}"
    else:
        collector.behave(fault.collector)
        endpoint = collector.endpoint
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": fault.protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(fault.otlp_timeout_s),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_QUEUE_SIZE": "128",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_ENVIRONMENT": "test",
    }
    server = start_server(f"sqlite:///{tmp_path / 'market.db'}", tmp_path, "sqlite", env)
    try:
        yield Faulty(server, collector, sentry, fault)
    finally:
        if server.process.poll() is None:
            stop_server(server)
        collector.stop()
        sentry.stop()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def dropped(client: httpx.Client) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    found = {}
    for match in re.finditer(rf'^{DROPPED}\{{{SIGNAL_LABEL}="(\w+)"\}} (\S+)$', r.text, re.MULTILINE):
        found[match[1]] = float(match[2])
    return found


def one_round(client: httpx.Client, admin: dict[str, str]) -> int:
    """ROUNDS requests that must all succeed; returns how many 500s (Sentry events) it caused."""
    errors = 0
    for i in range(ROUNDS):
        if i % 3 == 0:
            r = client.post("/api/v1/admin/test-monitoring", json={"kind": "error"}, headers=auth(admin))
            assert r.status_code == 500 and r.json()["sentry_event_id"], r.text
            errors += 1
        elif i % 3 == 1:
            r = client.get("/api/v1/items", params={"q": "mug"})
            assert r.status_code == 200, r.text
        else:
            assert client.get("/api/v1/no-such-thing").status_code == 404
    return errors


def test_requests_succeed_memory_stays_bounded_drops_are_counted_and_shutdown_is_bounded(faulty):
    server = faulty.server
    with server.client() as c:
        admin = create_admin(server, c)
        # Fill the span queue (128) and Sentry's (100) first: from then on, requests may not grow the process.
        # Events neither delivered nor counted as lost are in Sentry's queue: it is full at 100 (its worker
        # drains meanwhile, so that can take a few rounds), or stays empty when events leave at once.
        errors = one_round(c, admin) + one_round(c, admin)
        for _ in range(6):
            backlog = errors - dropped(c).get(drops.SENTRY_EVENTS, 0) - len(faulty.sentry.events())
            if backlog >= SENTRY_QUEUE or backlog <= 2:
                break
            errors += one_round(c, admin)
        errors += one_round(c, admin)  # the allocator settles (breadcrumbs, caches) once the queues are full
        filled = rss_kb(server.process.pid)
        for _ in range(MEASURED_ROUNDS):
            errors += one_round(c, admin)
        grown = rss_kb(server.process.pid) - filled
        assert grown < RSS_GROWTH_BOUND_KB, f"RSS grew by {grown} kB over {MEASURED_ROUNDS * ROUNDS} requests"

        # Spans are dropped (export failed or queue full) and counted.
        wait_until(lambda: dropped(c).get(drops.SPANS, 0) > 0, timeout=20, what="dropped spans on /metrics")
        if faulty.fault.sentry is Behaviour.OK:
            # The control: a healthy Sentry gets every event its queue could hold; a burst of 500s still
            # overflows that queue (100), and whatever did not arrive is counted — nothing is lost silently.
            wait_until(
                lambda: len(faulty.sentry.events()) + dropped(c).get(drops.SENTRY_EVENTS, 0) == errors,
                what=f"{errors} Sentry events, each delivered or counted as dropped",
            )
            assert len(faulty.sentry.events()) >= SENTRY_QUEUE
        elif faulty.fault.sentry is Behaviour.HANG:
            # Sentry holds its first request; its queue keeps 100 events; the others overflow.
            least = errors - SENTRY_QUEUE - 1
            wait_until(
                lambda: dropped(c).get(drops.SENTRY_EVENTS, 0) >= least, what="overflowed Sentry events"
            )
        else:
            # Every event was answered by a 500 or a 429, or dropped in the 429's back-off: all were lost.
            wait_until(
                lambda: dropped(c).get(drops.SENTRY_EVENTS) == errors,
                what=f"{errors} lost Sentry events on /metrics (seen {dropped(c)})",
            )
        if faulty.fault.sentry is not Behaviour.OK:
            assert faulty.sentry.events() == [], "the failing Sentry accepted nothing"
        if faulty.fault.sentry is Behaviour.RATE_LIMITED:
            assert faulty.sentry.attempts == 1, (
                "after a 429 with Retry-After, the SDK waits instead of retrying"
            )

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=SHUTDOWN_BOUND_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(
            f"market serve still running {SHUTDOWN_BOUND_S} s after SIGTERM:\n{server.log.read_text()[-3000:]}"
        )
    took = time.monotonic() - started
    assert took < SHUTDOWN_BOUND_S
    assert server.process.returncode in (0, -signal.SIGTERM), server.log.read_text()[-3000:]
    assert "Application shutdown complete" in server.log.read_text()
