"""SQLite: copies made with the online backup API (`sqlite3.Connection.backup`), which sees one consistent
state of a live database while other connections keep writing (WAL), and restores through the same API so
that a failure leaves the target as it was."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager, closing
from pathlib import Path

from market.config import DatabaseURL
from market.private_files import private_sqlite_file

from .base import MIGRATIONS_TABLE, TOKEN_VERSION_COLUMN, USERS_TABLE, Progress, Snapshot, quote_identifier
from .errors import BackupError

BUSY_TIMEOUT_S = 30


class SqliteBackend:
    engine = "sqlite"
    payload_name = "database.sqlite3"
    magic = b"SQLite format 3\x00"
    compresslevel = 6

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    async def dump(self, directory: Path, progress: Progress) -> Snapshot:
        return await asyncio.to_thread(self._dump, directory / self.payload_name, progress)

    def _dump(self, payload: Path, progress: Progress) -> Snapshot:
        source_path = _path(self.url)
        if not source_path.is_file():
            raise BackupError(f"the database file {source_path} does not exist")
        progress.expect(2)
        try:
            with closing(_open(source_path)) as source, closing(sqlite3.connect(payload)) as copy:
                # One step (pages=-1): a single read transaction, hence a consistent snapshot. A stepwise
                # copy restarts whenever another connection writes, and might never finish on a busy database.
                source.backup(copy, pages=-1)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy {source_path}: {exc}") from None
        progress.step("copied")
        with closing(sqlite3.connect(payload)) as copy:
            copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal beside it
            tables = _tables(copy)
            counts = {name: _count(copy, name) for name in tables}
            head = _migration_head(copy, tables)
        progress.step("counted rows")
        return Snapshot(server_version=sqlite3.sqlite_version, migration_head=head, tables=counts)

    async def validate(self, payload: Path) -> None:
        await asyncio.to_thread(_integrity_check, payload)

    async def restore(
        self,
        payload: Path,
        target: DatabaseURL,
        progress: Progress,
        *,
        token_versions: Mapping[str, int] | None = None,
    ) -> None:
        await asyncio.to_thread(self._restore, payload, _path(target), progress, token_versions or {})

    def _restore(
        self, payload: Path, target: Path, progress: Progress, token_versions: Mapping[str, int]
    ) -> None:
        progress.expect(1)
        try:
            if token_versions:
                # Into the payload (this restore's own extracted copy) before it is copied: the versions
                # carried are part of the very copy that replaces the target, not a second write after it.
                with closing(sqlite3.connect(payload)) as db, db:
                    _carry_token_versions(db, token_versions)
            private_sqlite_file(target)
            with closing(_open(payload, read_only=True)) as source, closing(_open(target)) as destination:
                # Page by page under the target's write lock, in one step: other connections see the old
                # database or the new one, and an error leaves the old one.
                source.backup(destination, pages=-1)
        except (sqlite3.Error, OSError) as exc:
            raise BackupError(f"cannot restore into {target}: {exc}") from None
        progress.step("restored")

    async def token_versions(self, target: DatabaseURL) -> dict[str, int]:
        def versions() -> dict[str, int]:
            path = _path(target)
            if not path.is_file() or path.stat().st_size == 0:
                return {}
            try:
                with closing(_open(path, read_only=True)) as db:
                    if not _has_token_versions(db):
                        return {}
                    rows = db.execute(f"SELECT id, {TOKEN_VERSION_COLUMN} FROM {USERS_TABLE}").fetchall()
            except sqlite3.Error as exc:
                raise BackupError(f"cannot use the database {target.redacted()}: {exc}") from None
            return dict(rows)

        return await asyncio.to_thread(versions)

    @asynccontextmanager
    async def scratch(self, workdir: Path) -> AsyncIterator[DatabaseURL]:
        path = workdir / "scratch.sqlite3"  # sqlite:///relative and sqlite:////absolute both parse
        try:
            yield DatabaseURL.parse(f"sqlite:///{path}")
        finally:
            await asyncio.to_thread(_remove_database_files, path)

    async def check(self, target: DatabaseURL) -> None:
        await asyncio.to_thread(_integrity_check, _path(target))

    async def count_rows(self, target: DatabaseURL, *, also: Collection[str] = ()) -> dict[str, int]:
        # `also` is for partitioned tables, which SQLite does not have: every table is counted already.
        def count() -> dict[str, int]:
            with closing(_open(_path(target), read_only=True)) as db:
                return {name: _count(db, name) for name in _tables(db)}

        return await asyncio.to_thread(count)

    async def migrations(self, target: DatabaseURL) -> list[str] | None:
        def versions() -> list[str] | None:
            with closing(_open(_path(target), read_only=True)) as db:
                if MIGRATIONS_TABLE not in _tables(db):
                    return None
                try:
                    rows = db.execute(f"SELECT version FROM {MIGRATIONS_TABLE}").fetchall()
                except sqlite3.Error as exc:
                    raise BackupError(f"its {MIGRATIONS_TABLE} table is not market's ({exc})") from None
                return sorted(row[0] for row in rows)

        return await asyncio.to_thread(versions)

    async def business_rows(self, target: DatabaseURL) -> dict[str, int]:
        def rows() -> dict[str, int]:
            path = _path(target)
            if not path.is_file() or path.stat().st_size == 0:
                return {}
            try:
                with closing(_open(path, read_only=True)) as db:
                    return {
                        name: n
                        for name in _tables(db)
                        if name != MIGRATIONS_TABLE and (n := _count(db, name))
                    }
            except sqlite3.Error as exc:
                raise BackupError(f"cannot use the database {target.redacted()}: {exc}") from None

        return await asyncio.to_thread(rows)


def _has_token_versions(db: sqlite3.Connection) -> bool:
    """The database has market's users table with token versions (not so: new, foreign, or older than them)."""
    columns = {row[1] for row in db.execute(f"PRAGMA table_info({USERS_TABLE})")}
    return {"id", TOKEN_VERSION_COLUMN} <= columns


def _carry_token_versions(db: sqlite3.Connection, token_versions: Mapping[str, int]) -> None:
    if _has_token_versions(db):
        db.executemany(
            f"UPDATE {USERS_TABLE} SET {TOKEN_VERSION_COLUMN} = :version "
            f"WHERE id = :id AND {TOKEN_VERSION_COLUMN} < :version",
            [{"id": user_id, "version": version} for user_id, version in token_versions.items()],
        )


def _path(url: DatabaseURL) -> Path:
    assert url.path is not None
    return Path(url.path)


def _open(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    try:
        if read_only:
            return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _tables(db: sqlite3.Connection) -> list[str]:
    """Ordinary tables: not SQLite's own, not virtual tables (FTS) nor their shadow tables, whose contents
    follow from the ordinary ones."""
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    virtual = [name for name, sql in rows if (sql or "").lstrip().upper().startswith("CREATE VIRTUAL TABLE")]
    return sorted(
        name for name, _ in rows if name not in virtual and not any(name.startswith(f"{v}_") for v in virtual)
    )


def _count(db: sqlite3.Connection, name: str) -> int:
    return db.execute(f"SELECT count(*) FROM {quote_identifier(name)}").fetchone()[0]


def _migration_head(db: sqlite3.Connection, tables: list[str]) -> str | None:
    if MIGRATIONS_TABLE not in tables:
        return None
    return db.execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").fetchone()[0]


def _integrity_check(path: Path) -> None:
    try:
        with closing(_open(path, read_only=True)) as db:
            result = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"not a sound SQLite database ({exc})") from None
    if result != ["ok"]:
        raise BackupError(f"PRAGMA integrity_check failed: {result[0]}")
