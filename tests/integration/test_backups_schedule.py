"""The daily schedule, with virtual time: it runs create at the configured UTC time, and among several
workers (service workers or `market backup schedule` processes) exactly one takes each day's backup."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time as wallclock
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from market.config import DatabaseURL
from market.ops.backups.manifest import archive_name
from market.ops.backups.schedule import LeadershipLost, leadership, run_daily, scheduled_backups
from market.ops.backups.service import BackupService
from market.telemetry import names
from tests.support.backups import Market, seed
from tests.support.fakes import FakeClock

START = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)


def _runs(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    counts: dict[str, int] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == names.BACKUP_RUNS[0]:
                    for point in metric.data.data_points:
                        outcome = point.attributes[names.BACKUP_OUTCOME]
                        counts[outcome] = counts.get(outcome, 0) + point.value
    return counts


def test_the_schedule_takes_a_backup_every_day_at_the_configured_utc_time(fresh_sqlite_url, tmp_path):
    seed(fresh_sqlite_url, items=50)
    clock = FakeClock(START, step=timedelta(0))
    service = BackupService(DatabaseURL.parse(fresh_sqlite_url), tmp_path / "backups", clock=clock)

    runs = asyncio.run(run_daily(service, time(3, 15), clock=clock, sleep=clock.sleep, max_runs=3))

    assert runs == 3
    assert [info.path.name for info in service.backups()] == [
        archive_name(datetime(2026, 3, day, 3, 15, tzinfo=UTC)) for day in (1, 2, 3)
    ]


def test_several_workers_take_one_backup_per_day_between_them(market: Market, engine: str):
    seed(market.url, items=50)
    workers = 3
    clock = FakeClock(START, step=timedelta(0), workers=workers, until=START + timedelta(days=3, hours=1))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    services = [
        BackupService(DatabaseURL.parse(market.url), market.directory, clock=clock, meter_provider=meters)
        for _ in range(workers)
    ]

    async def three_days() -> None:
        tasks = [
            asyncio.create_task(
                scheduled_backups(s, time(3, 0), clock=clock, sleep=clock.sleep, check_interval_s=3 * 3600)
            )
            for s in services
        ]
        try:
            stopped = asyncio.create_task(clock.stopped.wait())
            await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done():
                    task.result()  # a worker must never end on its own
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(asyncio.wait_for(three_days(), timeout=30))

    assert [p.name for p in market.archives()] == [
        archive_name(datetime(2026, 3, day, 3, 0, tzinfo=UTC)) for day in (1, 2, 3)
    ]
    # Had two workers tried the same day, the second would have failed (and been counted).
    assert _runs(reader) == {"success": 3, "failure": 0}  # the failure series exists at zero from the start


def test_leadership_is_exclusive_and_passes_on_when_the_leader_dies(fresh_postgres_url, tmp_path):
    service = BackupService(DatabaseURL.parse(fresh_postgres_url), tmp_path)

    async def scenario() -> None:
        async with leadership(service) as leader:
            assert leader is not None
            async with leadership(service) as other:
                assert other is None
            # The leader's dedicated connection dies (a failover, an idle-session killer, …).
            admin = await asyncpg.connect(DatabaseURL.parse(fresh_postgres_url).dsn)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            with pytest.raises(LeadershipLost):
                await leader()
            async with leadership(service) as successor:
                assert successor is not None

    asyncio.run(scenario())


def test_the_schedule_command_runs_until_sigterm(fresh_sqlite_url, tmp_path):
    env = {
        **os.environ,
        "MARKET_DATABASE_URL": fresh_sqlite_url,
        "MARKET_BACKUP_DIR": str(tmp_path / "backups"),
        "MARKET_BACKUP_SCHEDULE": "04:30",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "market", "backup", "schedule"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wallclock.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "every day at 04:30 UTC" in err and err.rstrip().endswith("stopped")
    assert '"next backup scheduled"' in out  # JSON log lines on stdout


def test_the_schedule_command_refuses_a_bad_time(fresh_sqlite_url, tmp_path):
    result = Market(fresh_sqlite_url, Path(tmp_path))("schedule", "--at", "25:00")
    assert result.exit_code == 2 and "HH:MM" in result.output


@pytest.mark.parametrize("schedule", ["03:00", ""])
def test_service_workers_run_the_schedule_only_when_configured(tmp_path: Path, schedule: str):
    from litestar.testing import TestClient

    from market.bootstrap import build_app
    from market.config import Settings
    from market.ops.backups.schedule import TASK_NAME

    settings = Settings.from_env(
        {
            "MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'market.db'}",
            "MARKET_VAR_DIR": str(tmp_path),
            "MARKET_BACKUP_DIR": str(tmp_path / "backups"),
            "MARKET_BACKUP_SCHEDULE": schedule,
        },
        dotenv=None,
    )

    def schedule_tasks() -> list[asyncio.Task]:
        return [task for task in asyncio.all_tasks() if task.get_name() == TASK_NAME]

    with TestClient(build_app(settings)) as client:
        running = client.blocking_portal.call(schedule_tasks)
        assert len(running) == (1 if schedule else 0)
    assert all(task.done() for task in running)  # stopped with the app
