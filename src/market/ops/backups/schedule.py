"""Daily backups: `market backup schedule` (a long-running process) and the same loop inside a service worker
when MARKET_BACKUP_SCHEDULE is set. Whichever processes run it, one of them at a time is the leader and takes
the backups: the holder of a PostgreSQL advisory lock on a dedicated connection (a file lock beside the
backups on SQLite, whose database is on one machine anyway)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg

from market.config import Settings
from market.private_files import open_private, private_dir

from .errors import BackupError
from .service import BackupInfo, BackupService, Clock, utcnow

log = logging.getLogger(__name__)

DEFAULT_TIME = time(3, 0)
"""When `market backup schedule` runs without --at or MARKET_BACKUP_SCHEDULE (UTC)."""
LEADER_LOCK_ID = 72_616_002
"""The advisory lock key (per database) of the backup leader; the migrations use 72_616_001."""
LOCK_FILE = ".schedule.lock"
CHECK_INTERVAL_S = 60.0
"""How often a waiting leader checks that it still holds the lock, and a follower tries to take it."""

Sleep = Callable[[float], Awaitable[None]]
Alive = Callable[[], Awaitable[None]]
AfterRun = Callable[[BackupInfo], Awaitable[None]]


class LeadershipLost(Exception):
    """The leader's lock connection broke: another process may lead now."""


def next_run(now: datetime, at: time) -> datetime:
    """The first `at` (UTC) strictly after `now`."""
    now = now.astimezone(UTC)
    due = datetime.combine(now.date(), at, tzinfo=UTC)
    return due if due > now else due + timedelta(days=1)


async def run_daily(
    service: BackupService,
    at: time,
    *,
    clock: Clock = utcnow,
    sleep: Sleep = asyncio.sleep,
    alive: Alive | None = None,
    after: AfterRun | None = None,
    max_runs: int | None = None,
    check_interval_s: float = CHECK_INTERVAL_S,
) -> int:
    """Create a backup every day at `at` (UTC); a failed run is logged and the next day is tried again.
    Returns after `max_runs` runs (None: never). `alive` is awaited while waiting and before each run."""
    runs = 0
    while max_runs is None or runs < max_runs:
        due = next_run(clock(), at)
        log.info("next backup scheduled", extra={"due": due.isoformat()})
        while (remaining := (due - clock()).total_seconds()) > 0:
            await sleep(min(remaining, check_interval_s))
            if alive is not None:
                await alive()
        try:
            info = await service.create()
            if after is not None:
                await after(info)
        except BackupError as exc:
            log.error("scheduled backup failed", extra={"error": exc.detail})
        except Exception:
            # A bug must not end the schedule (the failure is counted in market.backup.runs).
            log.exception("scheduled backup failed unexpectedly")
        runs += 1
    return runs


async def scheduled_backups(
    service: BackupService,
    at: time,
    *,
    clock: Clock = utcnow,
    sleep: Sleep = asyncio.sleep,
    after: AfterRun | None = None,
    max_runs: int | None = None,
    check_interval_s: float = CHECK_INTERVAL_S,
) -> None:
    """`run_daily` in whichever of several processes holds the leader lock; the others wait to take over.
    Runs until cancelled (or until this process has made `max_runs` runs)."""
    runs = 0
    while max_runs is None or runs < max_runs:
        try:
            async with leadership(service) as alive:
                if alive is None:
                    await sleep(check_interval_s)
                    continue
                log.info("this process takes the scheduled backups")
                left = None if max_runs is None else max_runs - runs
                runs += await run_daily(
                    service,
                    at,
                    clock=clock,
                    sleep=sleep,
                    alive=alive,
                    after=after,
                    max_runs=left,
                    check_interval_s=check_interval_s,
                )
        except LeadershipLost:
            log.warning("lost the backup leader lock; trying to take it again")
        except BackupError as exc:
            log.warning("cannot take the backup leader lock", extra={"error": exc.detail})
            await sleep(check_interval_s)


@asynccontextmanager
async def leadership(service: BackupService) -> AsyncIterator[Alive | None]:
    """Yields a liveness check if this process is the leader, None if another one is."""
    if service.database.engine == "postgresql":
        async with _advisory_lock(service) as alive:
            yield alive
    else:
        async with _file_lock(service) as alive:
            yield alive


@asynccontextmanager
async def _advisory_lock(service: BackupService) -> AsyncIterator[Alive | None]:
    try:
        # Not from the pool: a session-level lock must stay on one connection, and the pool's connections
        # are released without a reset (see market.adapters.db.database).
        conn = await asyncpg.connect(service.database.dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to {service.database.redacted()}: {exc}") from None
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_ID):
            yield None
            return

        async def alive() -> None:
            try:
                await conn.fetchval("SELECT 1", timeout=30)
            except Exception as exc:
                # Whatever broke (asyncpg has several ways of saying "connection gone"), the lock is not
                # known to be ours any more.
                raise LeadershipLost(str(exc)) from exc

        yield alive
    finally:
        # Closing the session releases the lock, if it still exists at all.
        try:
            await conn.close(timeout=5)
        except Exception:
            conn.terminate()


@asynccontextmanager
async def _file_lock(service: BackupService) -> AsyncIterator[Alive | None]:
    try:
        private_dir(service.directory)
        # Held for the whole leadership.
        handle = os.fdopen(open_private(service.directory / LOCK_FILE, os.O_WRONLY | os.O_APPEND), "a")
    except OSError as exc:
        raise BackupError(f"cannot open {service.directory / LOCK_FILE}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return

        async def alive() -> None:
            pass

        yield alive
    finally:
        handle.close()  # releases the lock


TASK_NAME = "market-backup-schedule"


def start_in_process(settings: Settings, **providers: Any) -> asyncio.Task[None] | None:
    """In a service worker: the daily backup at MARKET_BACKUP_SCHEDULE (None when unset), as a background
    task to cancel at shutdown. Every worker may start it; only the leader takes backups. `providers`
    (tracer_provider, meter_provider) default to the OpenTelemetry globals."""
    if settings.backup.schedule is None:
        return None
    service = BackupService.from_settings(settings, **providers)
    return asyncio.create_task(scheduled_backups(service, settings.backup.schedule), name=TASK_NAME)
