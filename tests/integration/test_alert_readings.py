"""What the alert rules read, taken from real OpenTelemetry instruments (in-memory reader, no globals), the
sibling workers' snapshots and the backup directory: the names the rules depend on are the ones recorded."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource

from market.adapters.telemetry.events import OtelEventPublisher
from market.domain.events import PaymentAttempted, WebhookReceived, WebhookRejected
from market.domain.money import Money
from market.ops.alerting.readings import ExpositionReadings
from market.ops.backups.manifest import newest_archive_time
from market.telemetry import names
from market.telemetry.metrics import Instruments, SharedMetricReader, build_meter_provider
from market.telemetry.prometheus import MetricsExposition, SnapshotDirectory


class Process:
    """One process's metrics: the meter provider, its instruments and the exposition over them."""

    def __init__(self, metrics_dir: Path) -> None:
        self.reader = SharedMetricReader()
        provider = build_meter_provider(Resource.create({}), self.reader, environ={})
        self.meter = provider.get_meter(names.INSTRUMENTATION_SCOPE)
        self.instruments = Instruments.create(self.meter)
        self.exposition = MetricsExposition(self.reader, SnapshotDirectory(metrics_dir))

    def requests(
        self, count: int, status: int, seconds: float = 0.05, route: str | None = "/api/v1/items"
    ) -> None:
        attributes: dict[str, str | int] = {
            names.HTTP_REQUEST_METHOD: "GET",
            names.HTTP_RESPONSE_STATUS_CODE: status,
        }
        if route:
            attributes[names.HTTP_ROUTE] = route
        for _ in range(count):
            self.instruments.http_duration.record(seconds, attributes)

    def payments(self, outcome: str, count: int) -> None:
        OtelEventPublisher(self.instruments).publish(
            [PaymentAttempted("o", outcome, "card", Money(1000, "EUR")) for _ in range(count)]
        )

    def outbound_webhooks(self, outcome: str, count: int) -> None:
        attributes = {names.WEBHOOK_DIRECTION: "outbound", names.WEBHOOK_OUTCOME: outcome}
        self.instruments.webhook_deliveries.add(count, attributes)


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "metrics"


def test_a_reading_counts_requests_5xx_durations_payments_and_webhooks(metrics_dir):
    process = Process(metrics_dir)
    process.requests(6, 200)
    process.requests(2, 404, route=None)  # unknown route: no template
    process.requests(1, 500, seconds=3.0, route="/api/v1/admin/test-monitoring")
    process.requests(1, 503)
    process.payments("succeeded", 7)
    process.payments("declined", 2)
    process.payments("error", 1)
    process.outbound_webhooks("success", 3)
    process.outbound_webhooks("failure", 1)
    OtelEventPublisher(process.instruments).publish([WebhookReceived("failure"), WebhookReceived("success")])

    reading = ExpositionReadings(process.exposition)()

    assert reading.requests == 10
    assert reading.server_errors == 2
    items = reading.route_duration_buckets["/api/v1/items"]
    assert items[math.inf] == 7
    assert items[0.05] == 7
    slow = reading.route_duration_buckets["/api/v1/admin/test-monitoring"]
    assert (slow[2.5], slow[5], slow[math.inf]) == (0, 1, 1)  # the 3 s one
    assert reading.route_duration_buckets[""][math.inf] == 2  # no route template: counted together
    assert reading.payment_attempts == 10
    assert reading.payment_failures == 1  # the system failure only
    assert reading.payment_declines == 2
    assert reading.webhook_deliveries == 6
    assert reading.webhook_failures == 2
    assert reading.backup_last_success is None


def test_health_and_metrics_routes_are_left_out_as_the_recording_rules_do(metrics_dir):
    process = Process(metrics_dir)
    process.requests(50, 200, route="/health/live")
    process.requests(5, 503, route="/health/ready")
    process.requests(20, 200, route="/metrics")
    process.requests(3, 200)
    process.requests(1, 500)
    reading = ExpositionReadings(process.exposition)()
    assert (reading.requests, reading.server_errors) == (4, 1)
    assert set(reading.route_duration_buckets) == {"/api/v1/items"}


def test_rejected_provider_webhooks_are_neither_deliveries_nor_failures(metrics_dir):
    process = Process(metrics_dir)
    OtelEventPublisher(process.instruments).publish(
        [WebhookRejected(reason) for reason in ("missing_signature", "bad_signature", "stale_signature")] * 50
        + [WebhookReceived("success")]
    )
    reading = ExpositionReadings(process.exposition)()
    assert (reading.webhook_deliveries, reading.webhook_failures) == (1, 0)


def test_an_idle_process_reads_all_zeros(metrics_dir):
    reading = ExpositionReadings(Process(metrics_dir).exposition)()
    assert (reading.requests, reading.payment_attempts, reading.webhook_deliveries) == (0, 0, 0)
    assert reading.backup_last_success is None


def test_sibling_workers_snapshots_are_added_in(metrics_dir):
    sibling = Process(metrics_dir)
    sibling.requests(4, 500)
    sibling.payments("declined", 1)
    this = Process(metrics_dir)
    group = this.exposition.directory.directory  # this `market serve`'s workers' folder
    group.mkdir(parents=True)
    (group / "999999.json").write_text(json.dumps(sibling.exposition.collect()))

    this.requests(6, 200)
    reading = ExpositionReadings(this.exposition)()
    assert (reading.requests, reading.server_errors, reading.payment_declines) == (10, 4, 1)


def test_the_last_backup_is_the_newer_of_the_gauge_and_the_newest_archive(metrics_dir, tmp_path):
    process = Process(metrics_dir)
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "market-20261127T030000Z.tar.gz").write_bytes(b"")
    (backups / "market-20261128T030000Z.tar.gz").write_bytes(b"")
    archived = datetime(2026, 11, 28, 3, 0, tzinfo=UTC).timestamp()
    read = ExpositionReadings(process.exposition, partial(newest_archive_time, backups))
    assert read().backup_last_success == archived

    gauge = process.meter.create_gauge(
        *names.BACKUP_LAST_SUCCESS[:2], description=names.BACKUP_LAST_SUCCESS[2]
    )
    gauge.set(archived + 3600)
    assert read().backup_last_success == archived + 3600
    gauge.set(archived - 3600)
    assert read().backup_last_success == archived


def test_only_complete_archives_count_as_backups(tmp_path):
    assert newest_archive_time(tmp_path / "missing") is None
    (tmp_path / ".market-20261129T030000Z.tar.gz.partial").write_bytes(b"")
    (tmp_path / "market-20261129T030000Z.tar.gz.verified.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    assert newest_archive_time(tmp_path) is None
    (tmp_path / "market-20261101T000000Z.tar.gz").write_bytes(b"")
    assert newest_archive_time(tmp_path) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def test_an_archive_dated_in_the_future_does_not_keep_the_stale_backup_alert_quiet(tmp_path):
    """Taken by a host whose clock was a year ahead: its age is unknown, so the newest believable one counts."""
    now = datetime(2026, 12, 5, 12, tzinfo=UTC).timestamp()
    (tmp_path / "market-20261101T000000Z.tar.gz").write_bytes(b"")
    (tmp_path / "market-20271205T000000Z.tar.gz").write_bytes(b"")
    assert newest_archive_time(tmp_path, now) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    (tmp_path / "market-20261205T123000Z.tar.gz").write_bytes(
        b""
    )  # half an hour ahead: clocks disagree a little
    assert newest_archive_time(tmp_path, now) == datetime(2026, 12, 5, 12, 30, tzinfo=UTC).timestamp()
