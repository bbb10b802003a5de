"""`market backup …`: registered on the `market` command in market.cli."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from market.config import ConfigError, Settings, parse_utc_time

from .base import NoProgress, Progress
from .errors import BackupError

if TYPE_CHECKING:
    from .manifest import Manifest
    from .service import BackupInfo, BackupService

# The heavier modules (asyncpg, OpenTelemetry, the service) are imported by the commands that use them:
# this module is imported whenever `market` starts.

T = TypeVar("T")

SCHEMA_VERSIONS = "market.schema_versions"
"""Key in click's `ctx.meta`: a callable returning the schema (migration) versions this market knows, oldest
first. The `market` command (market.cli, the commands' composition root) sets it, so that this wing needs no
import of the database adapter; `restore` refuses archives of any other schema."""


class BackupFailed(click.ClickException):
    """One line on stderr, exit status 1, no traceback."""

    def show(self, file: Any = None) -> None:
        click.echo(f"market: {self.format_message()}", err=True)


@click.group()
def backup() -> None:
    """Database backups: create, list, verify, restore, prune, schedule (MARKET_BACKUP_DIR)."""


@backup.command()
def create() -> None:
    """Back up the configured database into MARKET_BACKUP_DIR (a consistent snapshot; writes may go on)."""
    settings = _settings()
    with _telemetry(settings) as providers, _progress("backing up") as progress:
        service = _service(settings, **providers)
        info = _run(service.create(progress))
    manifest = info.manifest
    assert manifest is not None
    click.echo(
        f"created {info.path} ({_size(info.size)}, {sum(manifest.tables.values())} rows in "
        f"{len(manifest.tables)} tables, {manifest.duration_s:.1f} s)"
    )


@backup.command("list")
def list_() -> None:
    """The backups in MARKET_BACKUP_DIR, oldest first, with age, size and whether a restore was tested."""
    settings = _settings()
    service = _service(settings)
    backups = _call(service.backups)
    if not backups:
        click.echo(f"no backups in {service.directory}")
        return
    now = service.clock()
    rows = [("NAME", "CREATED", "AGE", "SIZE", "VERIFIED")]
    rows += [_row(info, now) for info in backups]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        )


@backup.command()
@click.argument("archive", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--latest", is_flag=True, help="Verify the newest backup in MARKET_BACKUP_DIR.")
def verify(archive: Path | None, latest: bool) -> None:
    """Test a backup: checksums, a real restore into a scratch database (created and dropped), then: a market
    database at the manifest's schema version, row counts as in the manifest (and PRAGMA integrity_check on
    SQLite). Success is recorded beside the archive. `restore` runs the same checks."""
    if (archive is None) == (not latest):
        raise click.UsageError("give a backup FILE or --latest (not both)")
    settings = _settings()
    service = _service(settings)
    with _progress("verifying") as progress:
        path = archive or _call(service.latest)
        result = _run(service.verify(path, progress))
    click.echo(
        f"verified {path}: restored {sum(result.tables.values())} rows in {len(result.tables)} tables, "
        f"as the manifest says ({result.duration_s:.1f} s)"
    )


@backup.command()
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that holds rows.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(archive: Path, force: bool, yes: bool) -> None:
    """Restore a backup into the configured database. The archive is checked as `verify` checks it first (a
    test restore into a scratch database); a database with rows is refused unless --force; the restore is all
    or nothing, and a refused or failed one leaves the database as it was. Each user keeps the higher of the
    backup's token version and the database's before the restore: tokens revoked since the backup stay
    revoked, valid ones stay valid. On PostgreSQL, behind another session's lock on a table it gives up after
    MARKET_BACKUP_LOCK_TIMEOUT (30 s), naming that session."""
    settings = _settings()
    service = _service(settings)
    target = settings.database.url.redacted()

    def confirm(manifest: Manifest) -> bool:
        from .manifest import format_time

        if yes:
            return True
        return click.confirm(
            f"Replace the contents of {target} with {archive.name} (taken {format_time(manifest.created_at)}, "
            f"{sum(manifest.tables.values())} rows)?",
            default=False,
            err=True,
        )

    # A progress bar would fight with the confirmation prompt: only without one.
    with _progress("restoring") if yes else nullcontext(NoProgress()) as progress:
        result = _run(service.restore(archive, force=force, confirm=confirm, progress=progress))
    click.echo(
        f"restored {archive.name} into {target}: {sum(result.tables.values())} rows in "
        f"{len(result.tables)} tables ({result.duration_s:.1f} s)"
    )
    if not result.token_versions_carried:
        click.echo(
            f"{target} held no accounts before the restore, so tokens revoked after the backup was taken "
            "may work again: revoke any that matter (market users set-password or disable)"
        )


@backup.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def prune(dry_run: bool) -> None:
    """Delete backups older than MARKET_BACKUP_RETENTION_DAYS (by their manifest's created_at), never the
    newest verified one; those of unknown age (unreadable, or dated in the future) are kept and reported."""
    settings = _settings()
    service = _service(settings)
    result = _call(lambda: service.prune(dry_run=dry_run))
    verb = "would delete" if dry_run else "deleted"
    for info in result.deleted:
        click.echo(f"{verb} {info.path}")
    for path in result.leftovers:
        click.echo(f"{verb} leftover {path}")
    for info in result.skipped:
        click.echo(f"kept {info.path}: age unknown ({info.error})", err=True)
    click.echo(
        f"{len(result.deleted)} {'to delete' if dry_run else 'deleted'}, {len(result.kept)} kept "
        f"(retention {service.retention_days} days)"
    )


@backup.command()
@click.option("--at", "at_", metavar="HH:MM", help="UTC time of day [MARKET_BACKUP_SCHEDULE, default 03:00].")
@click.option("--verify", "verify_after", is_flag=True, help="Verify each new backup.")
@click.option("--prune", "prune_after", is_flag=True, help="Prune after each successful backup.")
def schedule(at_: str | None, verify_after: bool, prune_after: bool) -> None:
    """Run `create` every day at a UTC time, until stopped (SIGTERM or Ctrl-C). Several such processes
    (or service workers with MARKET_BACKUP_SCHEDULE) take one backup per day between them."""
    import logging.config

    from market.telemetry.logs import logging_config

    from .schedule import DEFAULT_TIME, scheduled_backups

    settings = _settings()
    try:
        at = parse_utc_time(at_, "--at") if at_ else settings.backup.schedule or DEFAULT_TIME
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    logging.config.dictConfig(logging_config(settings.telemetry.log_level))  # JSON lines on stdout

    async def after(info: BackupInfo) -> None:
        if verify_after:
            await service.verify(info.path)
        if prune_after:
            await asyncio.to_thread(service.prune)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await scheduled_backups(service, at, after=after)

    click.echo(f"taking a backup every day at {at:%H:%M} UTC into {settings.backup.directory}", err=True)
    with _telemetry(settings) as providers:
        service = _service(settings, **providers)
        try:
            asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            click.echo("stopped", err=True)


# --- helpers -------------------------------------------------------------------------------------------


def _service(settings: Settings, **providers: Any) -> BackupService:
    from .service import BackupService

    known = click.get_current_context().meta.get(SCHEMA_VERSIONS)
    return BackupService.from_settings(
        settings, known_migrations=None if known is None else known(), **providers
    )


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise BackupFailed(str(exc)) from None


def _run(work: Coroutine[Any, Any, T]) -> T:
    return _call(lambda: asyncio.run(work))


def _call(work: Callable[[], T]) -> T:
    """Run `work`, turning every expected failure into one line."""
    import sqlite3

    import asyncpg

    try:
        return work()
    except BackupError as exc:
        raise BackupFailed(exc.detail) from None
    except (OSError, asyncpg.PostgresError, sqlite3.Error) as exc:
        raise BackupFailed(" ".join(f"{type(exc).__name__}: {exc}".split())) from None


def _row(info: BackupInfo, now: datetime) -> tuple[str, ...]:
    from .manifest import format_time
    from .service import dated_in_the_future

    if info.created_at is None:
        return (info.path.name, "?", "?", _size(info.size), f"unreadable: {info.error}")
    return (
        info.path.name,
        format_time(info.created_at),
        "in the future"
        if dated_in_the_future(info, now)
        else _age(now - info.created_at),  # age unknown, not 0
        _size(info.size),
        "yes" if info.verified else "no",
    )


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    if days:
        return f"{days}d {rest // 3600}h"
    if rest >= 3600:
        return f"{rest // 3600}h {rest % 3600 // 60}m"
    return f"{rest // 60}m {rest % 60}s"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class _Bar:
    """Progress on stderr, for a person at a terminal."""

    def __init__(self, label: str) -> None:
        self._bar: Any = click.progressbar(
            length=1, label=label, file=sys.stderr, item_show_func=lambda label: label, show_eta=False
        )
        self._total = 0

    def expect(self, steps: int) -> None:
        self._total += steps
        self._bar.length = max(self._total, 1)

    def step(self, label: str) -> None:
        self._bar.update(1, label)


@contextmanager
def _progress(label: str) -> Iterator[Progress]:
    if not sys.stderr.isatty():
        yield NoProgress()
        return
    bar = _Bar(label)
    with bar._bar:
        yield bar


@contextmanager
def _telemetry(settings: Settings) -> Iterator[dict[str, Any]]:
    """With an OTLP endpoint configured, the service's telemetry (market.telemetry.setup), so that this
    process pushes its `backup.create` span and backup metrics (a CronJob cannot be scraped), shut down
    within a deadline at the end. Without one there is nobody to tell: no providers."""
    otel = settings.telemetry
    endpoint = otel.otlp_endpoint or otel.otlp_metrics_endpoint
    if not endpoint or (otel.sdk_disabled or "").lower() == "true":
        yield {}
        return
    from market.telemetry.setup import install_telemetry

    telemetry = install_telemetry(settings)
    try:
        yield {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    finally:
        telemetry.shutdown()
