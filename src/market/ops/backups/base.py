"""What the service needs from an engine, progress reporting, and running the PostgreSQL client tools."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from market.config import DatabaseURL

from .errors import BackupError

MIGRATIONS_TABLE = "market_migrations"
"""Bookkeeping, not business data: a database holding only it (and empty tables) counts as empty."""

USERS_TABLE, TOKEN_VERSION_COLUMN = "users", "token_version"
"""A user's tokens are accepted while they carry this counter's value (`User.accepts_token`); revoking them
raises it. A restore carries it over (`BackupService.restore`)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What was learnt while dumping, all from the same consistent snapshot as the payload."""

    server_version: str
    migration_head: str | None
    tables: dict[str, int]


class Progress(Protocol):
    """Progress of a long operation, in steps; totals may grow as the work becomes known."""

    def expect(self, steps: int) -> None: ...

    def step(self, label: str) -> None: ...


class NoProgress:
    """The default: report nothing."""

    def expect(self, steps: int) -> None:
        pass

    def step(self, label: str) -> None:
        pass


class Backend(Protocol):
    """One database engine's way of dumping, restoring and inspecting a database."""

    engine: str
    payload_name: str
    """The payload's name inside the archive."""
    magic: bytes
    """How the payload file starts: a cheap check that it is what the manifest says."""
    compresslevel: int
    """gzip level of the archive around this engine's payload."""

    async def dump(self, directory: Path, progress: Progress) -> Snapshot:
        """Write the payload into `directory` from one consistent snapshot, even while writes continue."""
        ...

    async def validate(self, payload: Path) -> None:
        """Raise BackupError unless the payload can be restored (before the target is touched)."""
        ...

    async def restore(
        self,
        payload: Path,
        target: DatabaseURL,
        progress: Progress,
        *,
        token_versions: Mapping[str, int] | None = None,
    ) -> None:
        """Replace the objects in `target` with the payload's, stopping at (and undoing on) the first error.
        With `token_versions` (from `token_versions` of the target, read just before), each restored user's
        token version is then raised to at least the one given for their id."""
        ...

    async def token_versions(self, target: DatabaseURL) -> dict[str, int]:
        """Each user's token version in `target`, by id as stored: {} when it has no users (a new database, or
        one without market's users table)."""
        ...

    def scratch(self, workdir: Path) -> AbstractAsyncContextManager[DatabaseURL]:
        """A new empty database for a test restore, removed on exit."""
        ...

    async def check(self, target: DatabaseURL) -> None:
        """Engine-level consistency check of a database (PRAGMA integrity_check on SQLite)."""
        ...

    async def count_rows(self, target: DatabaseURL, *, also: Collection[str] = ()) -> dict[str, int]:
        """Rows per table that holds rows itself: a PostgreSQL partitioned table is counted in its partitions
        only. Plus the tables named in `also` that the database has, whatever they are: manifests written
        before that counted partitioned tables as well, and their archives must still verify."""
        ...

    async def migrations(self, target: DatabaseURL) -> list[str] | None:
        """The versions recorded in the migrations ledger; None if the database has no ledger; BackupError if
        its ledger cannot be read as market's."""
        ...

    async def business_rows(self, target: DatabaseURL) -> dict[str, int]:
        """Tables other than the migrations ledger that hold rows, and how many (empty: {})."""
        ...


def find_tool(name: str, environ: Mapping[str, str]) -> str:
    """The tool's path on the PATH the operation runs with, or a one-line error saying what to install."""
    path = shutil.which(name, path=environ.get("PATH", os.defpath))
    if path is None:
        raise BackupError(
            f"{name} not found on PATH; install the PostgreSQL client tools (e.g. postgresql-client) "
            "of the server's major version or newer"
        )
    return path


async def run_tool(argv: list[str], environ: Mapping[str, str], on_line: Callable[[str], None]) -> None:
    """Run a client tool, feeding its stderr lines to `on_line`; raise BackupError with its first error line
    if it fails. Cancelling kills the tool."""
    name = Path(argv[0]).name
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=dict(environ),
        )
    except OSError as exc:
        raise BackupError(f"cannot run {name}: {exc.strerror or exc}") from None
    assert process.stderr is not None
    lines: list[str] = []
    try:
        pending = b""
        while chunk := await process.stderr.read(65536):
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                _take(raw, lines, on_line)
        _take(pending, lines, on_line)
        returncode = await process.wait()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await asyncio.shield(process.wait())
        raise
    if returncode != 0:
        raise BackupError(f"{name} failed: {_first_error(name, lines, returncode)}")


def _take(raw: bytes, lines: list[str], on_line: Callable[[str], None]) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip()
    if line:
        lines.append(line)
        on_line(line)


def _first_error(name: str, lines: list[str], returncode: int) -> str:
    for line in lines:
        _, marker, rest = line.partition("error: ")
        if marker:
            return rest.strip()
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if lines:
        return lines[-1].removeprefix(f"{name}: ").strip()
    return f"exit status {returncode}"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
