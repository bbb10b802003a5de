"""The backup operations, for the CLI, the scheduler and tests alike."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, TracerProvider

from market import __version__
from market.config import DatabaseURL, Settings
from market.private_files import private_dir
from market.telemetry import names
from market.telemetry.metrics import counter, gauge

from .archive import (
    PARTIAL_SUFFIX,
    extract_archive,
    read_manifest,
    sha256_file,
    verified_marker,
    write_archive,
    write_json_atomic,
)
from .base import MIGRATIONS_TABLE, Backend, NoProgress, Progress
from .errors import BackupError
from .manifest import CLOCK_SKEW, FORMAT_VERSION, Manifest, archive_name, format_time, is_archive_name
from .postgres import RESTORE_LOCK_TIMEOUT_S, PostgresBackend
from .sqlite import SqliteBackend

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SUCCESS, FAILURE = "success", "failure"
"""Values of market.backup.outcome."""
STALE_PARTIAL_AGE = timedelta(days=1)
"""Leftovers of an interrupted run (hidden `*.partial`) older than this are removed by prune."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """An archive in the backup directory."""

    path: Path
    size: int
    verified: bool
    """`<archive>.verified.json` is this archive's: a restore of it was tested (`_is_verified`)."""
    manifest: Manifest | None
    error: str | None = None
    """Why the manifest could not be read (then `manifest` is None)."""

    @property
    def created_at(self) -> datetime | None:
        return self.manifest.created_at if self.manifest else None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    archive: Path
    manifest: Manifest
    tables: dict[str, int]
    """Rows per table in the scratch database the archive was restored into."""
    duration_s: float


@dataclass(frozen=True, slots=True)
class RestoreResult:
    archive: Path
    manifest: Manifest
    tables: dict[str, int]
    duration_s: float
    token_versions_carried: bool = True
    """The users' token versions of before the restore were carried over (`BackupService.restore`); False when
    the database held no users then (a new one): tokens revoked after the backup was taken may work again."""


@dataclass(slots=True)
class PruneResult:
    deleted: list[BackupInfo] = field(default_factory=list)
    kept: list[BackupInfo] = field(default_factory=list)
    skipped: list[BackupInfo] = field(default_factory=list)
    """Archives whose age is unknown (unreadable manifest, or dated in the future): never deleted automatically,
    reported instead."""
    leftovers: list[Path] = field(default_factory=list)
    """Stale work files of interrupted runs, removed."""


class BackupService:
    """Create, list, verify, restore and prune backups of one database in one directory."""

    def __init__(
        self,
        database: DatabaseURL,
        directory: Path,
        *,
        retention_days: int = 30,
        lock_timeout_s: float = RESTORE_LOCK_TIMEOUT_S,
        clock: Clock = utcnow,
        environ: Mapping[str, str] | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        known_migrations: Sequence[str] | None = None,
    ) -> None:
        """`lock_timeout_s`: how long a PostgreSQL restore waits behind another session's lock before it gives
        up, undone (MARKET_BACKUP_LOCK_TIMEOUT). `known_migrations`: the schema versions this market knows, oldest first, given by the composition
        root (the wing does not import the database adapter); `verify` and `restore` refuse an archive whose
        schema is not among them, or whose database's migrations ledger is not exactly this market's up to
        that schema. None: only the ledger's latest version is checked against the manifest."""
        self.database = database
        self.known_migrations = None if known_migrations is None else tuple(known_migrations)
        self.directory = directory
        self.retention_days = retention_days
        self.clock = clock
        environ = os.environ if environ is None else environ
        self.backend: Backend = (
            PostgresBackend(database, environ, lock_timeout_s=lock_timeout_s)
            if database.engine == "postgresql"
            else SqliteBackend(database)
        )
        self._tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(names.INSTRUMENTATION_SCOPE, meter_provider=meter_provider)
        self._runs = counter(meter, names.BACKUP_RUNS)
        for outcome in (SUCCESS, FAILURE):  # at zero from the start: the first failure moves increase()
            self._runs.add(0, {names.BACKUP_OUTCOME: outcome})
        self._last_success = gauge(meter, names.BACKUP_LAST_SUCCESS)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> BackupService:
        return cls(
            settings.database.url,
            settings.backup.directory,
            retention_days=settings.backup.retention_days,
            lock_timeout_s=settings.backup.lock_timeout_s,
            **kwargs,  # type: ignore[arg-type]
        )

    # --- create ---------------------------------------------------------------------------------------

    async def create(self, progress: Progress | None = None) -> BackupInfo:
        """Snapshot the database into a new archive. On any failure nothing is left in the directory."""
        progress = progress or NoProgress()
        attributes = {names.DB_SYSTEM_NAME: self.database.engine, names.DB_NAMESPACE: self.database.name}
        with self._tracer.start_as_current_span(
            names.SPAN_BACKUP_CREATE, kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            try:
                info = await self._create(progress)
            except BaseException:
                span.set_attribute(names.BACKUP_OUTCOME, FAILURE)
                self._runs.add(1, {names.BACKUP_OUTCOME: FAILURE})
                raise
            span.set_attributes({names.BACKUP_OUTCOME: SUCCESS, names.BACKUP_SIZE: info.size})
            self._runs.add(1, {names.BACKUP_OUTCOME: SUCCESS})
            self._last_success.set(self.clock().timestamp())
        log.info("backup created", extra={"archive": str(info.path), "bytes": info.size})
        return info

    async def _create(self, progress: Progress) -> BackupInfo:
        created_at = self.clock().astimezone(UTC).replace(microsecond=0)
        started = time.perf_counter()
        final = self.directory / archive_name(created_at)
        progress.expect(2)
        with self._workdir(final.name) as work:
            if final.exists():
                raise BackupError(f"{final} already exists; not overwriting a backup")
            snapshot = await self.backend.dump(work, progress)
            payload = work / self.backend.payload_name
            digest = await asyncio.to_thread(sha256_file, payload)
            progress.step("checksummed")
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                created_at=created_at,
                engine=self.backend.engine,
                server_version=snapshot.server_version,
                database=self.database.name,
                migration_head=snapshot.migration_head,
                app_version=__version__,
                duration_s=time.perf_counter() - started,
                tables=snapshot.tables,
                files={payload.name: digest},
            )
            size = await asyncio.to_thread(
                write_archive, final, manifest, work, compresslevel=self.backend.compresslevel
            )
            progress.step("packed")
        return BackupInfo(path=final, size=size, verified=False, manifest=manifest)

    # --- list -----------------------------------------------------------------------------------------

    def backups(self) -> list[BackupInfo]:
        """Every archive in the directory, oldest first (by manifest created_at; unreadable ones first). Empty
        while the directory does not exist yet; BackupError if it is not a directory."""
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return []  # no backup taken yet: the first create makes the directory
        except NotADirectoryError:
            # A misconfigured MARKET_BACKUP_DIR, not an empty one: "no backups" would hide it.
            raise BackupError(f"the backup directory {self.directory} is not a directory") from None
        found = []
        for path in entries:
            if not (is_archive_name(path.name) and path.is_file()):
                continue
            try:
                manifest, error = read_manifest(path), None
            except BackupError as exc:
                manifest, error = None, exc.detail
            size = path.stat().st_size
            found.append(BackupInfo(path, size, _is_verified(path, size, manifest), manifest, error))
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda info: (info.created_at or epoch, info.path.name))

    def latest(self) -> Path:
        """The newest readable archive, passing over those dated in the future (`dated_in_the_future`)."""
        now = self.clock()
        readable = [info for info in self.backups() if info.manifest is not None]
        if not readable:
            raise BackupError(f"no backups in {self.directory}")
        dated = [info for info in readable if not dated_in_the_future(info, now)]
        if not dated:
            raise BackupError(
                f"no backups in {self.directory} dated up to now, {len(readable)} dated in the future (taken "
                "with a clock ahead?); name the one to verify"
            )
        return dated[-1].path

    # --- verify ---------------------------------------------------------------------------------------

    async def verify(self, archive: Path, progress: Progress | None = None) -> VerifyResult:
        """Check the checksums, restore into a scratch database and check that (`_test_restore`), then record
        success in `<archive>.verified.json`."""
        progress = progress or NoProgress()
        started = time.perf_counter()
        progress.expect(3)
        with self._workdir(f"verify-{archive.name}") as work:
            manifest, payload = await self._unpack(archive, work)
            progress.step("checksums ok")
            restored = await self._test_restore(archive, manifest, payload, work, progress)
        result = VerifyResult(archive, manifest, restored, time.perf_counter() - started)
        await asyncio.to_thread(self._mark_verified, result)
        log.info("backup verified", extra={"archive": str(archive)})
        return result

    async def _test_restore(
        self, archive: Path, manifest: Manifest, payload: Path, work: Path, progress: Progress
    ) -> dict[str, int]:
        """Restore the payload into a scratch database (dropped afterwards) and check the result: the engine's
        integrity check (PRAGMA integrity_check on SQLite), that it is a market database at the manifest's
        schema version (`_check_ledger`), then the row counts against the manifest. Returns the rows per
        table. Verify is this; restore does it before touching its target."""
        async with self.backend.scratch(work) as scratch:
            await self.backend.restore(payload, scratch, progress)
            await self.backend.check(scratch)
            progress.step("integrity ok")
            try:
                ledger = await self.backend.migrations(scratch)
            except BackupError as exc:
                raise BackupError(f"{archive.name}: {exc.detail}; not a market database") from None
            # Counted as the manifest counted: one from before partitioned tables were left out (their rows are
            # their partitions') lists them too, and still verifies.
            restored = await self.backend.count_rows(scratch, also=manifest.tables)
        _check_ledger(archive, manifest, ledger, self.known_migrations)
        _compare(archive, manifest.tables, restored)
        progress.step("row counts match")
        return restored

    def _mark_verified(self, result: VerifyResult) -> None:
        write_json_atomic(
            verified_marker(result.archive),
            {
                "archive": result.archive.name,
                "verified_at": format_time(self.clock()),
                "archive_bytes": result.archive.stat().st_size,
                "files": result.manifest.files,
                "engine": result.manifest.engine,
                "tables": result.tables,
                "duration_s": round(result.duration_s, 3),
                "app_version": __version__,
            },
        )

    # --- restore --------------------------------------------------------------------------------------

    async def restore(
        self,
        archive: Path,
        *,
        force: bool = False,
        confirm: Callable[[Manifest], bool] | None = None,
        progress: Progress | None = None,
    ) -> RestoreResult:
        """Replace the configured database's contents with the archive's. Everything is checked before the
        target is touched, a test restore into a scratch database included (as `verify` does), so that a
        refused or failed restore leaves the target as it was; a target with rows in business tables is
        refused unless `force`; `confirm` (if given) is asked last and may refuse.

        The backup holds each user's token version as it was when taken; one who signed out everywhere or
        changed their password since had theirs raised, and the tokens they revoked would be accepted again.
        So each restored user keeps the higher of the backup's version and the one the database held just
        before the restore: tokens revoked before the restore stay revoked, tokens valid before it stay valid.
        Only that counter is carried (status, password and the rest are the backup's). A new database holds
        no versions to carry (`RestoreResult.token_versions_carried`)."""
        progress = progress or NoProgress()
        started = time.perf_counter()
        progress.expect(3)
        with self._workdir(f"restore-{archive.name}") as work:
            try:
                manifest, payload = await self._ready_to_restore(archive, work, force, confirm, progress)
                # After the confirmation, as late as can be: a revocation after this read is not carried.
                token_versions = await self.backend.token_versions(self.database)
            except BackupError as exc:
                raise BackupError(f"{exc.detail}; {self.database.redacted()} was not changed") from None
            log.info("restoring backup", extra={"archive": str(archive)})
            # The engine's restore is all or nothing, and its payload is the one just tested.
            await self.backend.restore(payload, self.database, progress, token_versions=token_versions)
        found = await self.backend.count_rows(self.database, also=manifest.tables)
        restored = {name: n for name, n in found.items() if name in manifest.tables}
        if extra := sorted(set(found) - set(restored)):
            # --force keeps objects the backup does not know; the operator should hear about them.
            log.warning("tables not in the backup were left as they were", extra={"tables": extra})
        if restored != manifest.tables:
            # The same payload restored with the manifest's counts a moment ago: something wrote since. The
            # restore itself is done; failing now would not undo it.
            log.warning("rows changed since the restore; is something writing to the database?")
        log.info("backup restored", extra={"archive": str(archive)})
        return RestoreResult(archive, manifest, restored, time.perf_counter() - started, bool(token_versions))

    async def _ready_to_restore(
        self,
        archive: Path,
        work: Path,
        force: bool,
        confirm: Callable[[Manifest], bool] | None,
        progress: Progress,
    ) -> tuple[Manifest, Path]:
        """Every check of a restore, none of which touches the target; the payload that passed them."""
        manifest, payload = await self._unpack(archive, work)
        progress.step("checksums ok")
        # Read even when forced: a target that cannot be used is refused before anything is restored.
        rows = await self.backend.business_rows(self.database)
        if not force and rows:
            tables = ", ".join(f"{name} ({n})" for name, n in sorted(rows.items()))
            raise BackupError(
                f"the database {self.database.redacted()} is not empty (rows in {tables}); "
                "use --force to replace its contents"
            )
        await self._test_restore(archive, manifest, payload, work, progress)
        if confirm is not None and not confirm(manifest):
            raise BackupError("restore cancelled")
        return manifest, payload

    async def _unpack(self, archive: Path, work: Path) -> tuple[Manifest, Path]:
        """Extract and check everything that can be checked without touching any database."""

        def accept(manifest: Manifest) -> None:
            if manifest.engine != self.backend.engine:
                raise BackupError(
                    f"{archive.name}: this is a {manifest.engine} backup; the configured database "
                    f"({self.database.redacted()}) is {self.backend.engine}"
                )
            if set(manifest.files) != {self.backend.payload_name}:
                raise BackupError(
                    f"{archive.name}: unexpected files {sorted(manifest.files)} for {manifest.engine}"
                )
            _check_schema_is_known(archive, manifest, self.known_migrations)

        manifest = await asyncio.to_thread(extract_archive, archive, work, accept)
        payload = work / self.backend.payload_name
        with payload.open("rb") as f:
            if f.read(len(self.backend.magic)) != self.backend.magic:
                raise BackupError(
                    f"{archive.name}: {payload.name} is not a {manifest.engine} dump; "
                    "the archive was not made by market backup for this engine"
                )
        try:
            await self.backend.validate(payload)
        except BackupError as exc:
            # The engine's message is about "the database": say it is the archive's, not the configured one.
            raise BackupError(
                f"{archive.name}: {payload.name} is damaged or unreadable: {exc.detail}"
            ) from None
        return manifest, payload

    # --- prune ----------------------------------------------------------------------------------------

    def prune(self, *, dry_run: bool = False) -> PruneResult:
        """Delete archives whose manifest `created_at` is more than `retention_days` old, except the newest
        verified archive; those of unknown age (unreadable, or dated in the future) are kept and reported.
        Also removes stale work files of interrupted runs."""
        now = self.clock()
        cutoff = now - timedelta(days=self.retention_days)
        backups = self.backups()
        verified = [
            info
            for info in backups
            if info.verified and info.manifest is not None and not dated_in_the_future(info, now)
        ]
        newest_verified = verified[-1] if verified else None
        result = PruneResult()
        for info in backups:
            if info.created_at is None:
                result.skipped.append(info)
            elif dated_in_the_future(info, now):
                when = format_time(info.created_at)
                result.skipped.append(replace(info, error=f"its created_at {when} is in the future"))
            elif info.created_at >= cutoff or info is newest_verified:
                result.kept.append(info)
            else:
                result.deleted.append(info)
                if not dry_run:
                    info.path.unlink(missing_ok=True)
                    verified_marker(info.path).unlink(missing_ok=True)
                    log.info("backup pruned", extra={"archive": str(info.path)})
        for path in self._stale_partials(now):
            result.leftovers.append(path)
            if not dry_run:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        return result

    def _stale_partials(self, now: datetime) -> list[Path]:
        if not self.directory.is_dir():
            return []
        limit = (now - STALE_PARTIAL_AGE).timestamp()
        return sorted(
            path
            for path in self.directory.iterdir()
            if path.name.startswith(".")
            and path.name.endswith(PARTIAL_SUFFIX)
            and path.lstat().st_mtime < limit
        )

    @contextmanager
    def _workdir(self, purpose: str) -> Iterator[Path]:
        """A hidden directory beside the backups (same filesystem, so no surprise on a small /tmp), always
        removed afterwards."""
        try:
            private_dir(self.directory)
            path = Path(tempfile.mkdtemp(prefix=f".{purpose}.", suffix=PARTIAL_SUFFIX, dir=self.directory))
        except OSError as exc:
            raise BackupError(
                f"cannot use the backup directory {self.directory}: {exc.strerror or exc}"
            ) from None
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def dated_in_the_future(info: BackupInfo, now: datetime) -> bool:
    """The manifest's created_at is later than `now` (beyond CLOCK_SKEW): the clock of the host that took the
    backup was ahead, or ours is behind. Either way the archive's real age is unknown. Taken at its word it
    would outrank every genuinely newer backup for `verify --latest` (and as prune's newest verified one) and
    escape retention until the clock caught up, maybe for years; so it is treated as an unreadable archive
    is: never the latest, never deleted automatically (it may be the one good copy), reported by prune so
    that an operator decides."""
    return info.created_at is not None and info.created_at > now + CLOCK_SKEW


def _is_verified(archive: Path, size: int, manifest: Manifest | None) -> bool:
    """The marker beside `archive` was written by a verify of this very file: same name, same size and (in
    markers that record them) the same checksums in its manifest. A marker copied beside another archive, or
    left behind when the archive was replaced, does not count: prune keeps the newest verified backup."""
    try:
        marker = json.loads(verified_marker(archive).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or manifest is None:
        return False
    if marker.get("archive") != archive.name or marker.get("archive_bytes") != size:
        return False
    return "files" not in marker or marker["files"] == manifest.files


def _check_schema_is_known(archive: Path, manifest: Manifest, known: Sequence[str] | None) -> None:
    """What the manifest alone tells (before any restore): `_check_ledger` checks the database agrees."""
    if manifest.migration_head is None:
        raise BackupError(f"{archive.name}: its manifest names no schema version; not a market database")
    if known is not None and manifest.migration_head not in known:
        raise BackupError(
            f"{archive.name}: its schema ({manifest.migration_head}) is newer than this market knows "
            f"({known[-1]}); restore it with market {manifest.app_version} or newer"
        )


def _check_ledger(
    archive: Path, manifest: Manifest, ledger: list[str] | None, known: Sequence[str] | None
) -> None:
    """The restored database is a market database at the manifest's schema version: its migrations ledger
    ends at that version and, when this market's migrations are known, holds exactly those up to it (what
    `market db migrate` expects to find afterwards)."""
    if ledger is None:
        raise BackupError(
            f"{archive.name}: its database has no {MIGRATIONS_TABLE} table; not a market database"
        )
    head = manifest.migration_head
    assert head is not None  # _check_schema_is_known
    if known is None:
        matches = max(ledger, default=None) == head
    else:
        matches = set(ledger) == set(known[: known.index(head) + 1])
    if not matches:
        raise BackupError(
            f"{archive.name}: its database's {MIGRATIONS_TABLE} ({len(ledger)} versions, latest "
            f"{max(ledger, default='none')}) is not that of schema version {head} the manifest names; "
            "not a market database as described"
        )


def _compare(archive: Path, expected: dict[str, int], actual: dict[str, int]) -> None:
    differences = [
        f"{name}: {expected.get(name, 'absent')} in the manifest, {actual.get(name, 'absent')} restored"
        for name in sorted(set(expected) | set(actual))
        if expected.get(name) != actual.get(name)
    ]
    if differences:
        raise BackupError(
            f"{archive.name}: restored into a scratch database, but row counts differ from the manifest: "
            + "; ".join(differences)
        )
