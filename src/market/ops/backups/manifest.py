"""`manifest.json`: what an archive holds, written first in the archive so it can be read cheaply.

The keys are fixed by docs/API.md: format_version, created_at, engine, server_version, database,
migration_head, app_version, duration_s, tables {name: rows}, files {name: sha256}.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import BackupError

FORMAT_VERSION = 1
"""Bumped when an older `market` could no longer read what a newer one writes."""
MANIFEST_NAME = "manifest.json"
ENGINES = ("postgresql", "sqlite")

_ARCHIVE_NAME = re.compile(r"market-(\d{8}T\d{6}Z)\.tar\.gz")
_STAMP = "%Y%m%dT%H%M%SZ"
CLOCK_SKEW = timedelta(hours=1)
"""A backup's time up to this far in the future is taken at its word (hosts sharing a backup directory disagree by
seconds); beyond it, the archive's age is unknown (the clock of the host that took it was ahead)."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def archive_name(created_at: datetime) -> str:
    """`market-YYYYMMDDTHHMMSSZ.tar.gz` for a UTC instant."""
    return f"market-{created_at.astimezone(UTC).strftime(_STAMP)}.tar.gz"


def is_archive_name(name: str) -> bool:
    return _ARCHIVE_NAME.fullmatch(name) is not None


def archive_time(name: str) -> datetime | None:
    """The UTC instant an archive name carries (the inverse of `archive_name`); None for other names."""
    match = _ARCHIVE_NAME.fullmatch(name)
    return datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC) if match else None


def newest_archive_time(directory: Path, now: float | None = None) -> float | None:
    """Unix time of the newest backup archive in `directory`, from its name (`market-YYYYMMDDTHHMMSSZ.tar.gz`,
    the manifest's `created_at`). An archive only appears there once it is complete, so its presence is a
    success — also one made by `market backup create` or a CronJob in another process. One dated beyond
    CLOCK_SKEW after `now` is passed over: taken at its word, it would keep the stale-backup alert quiet until
    the clock caught up with it, whatever became of the backups since."""
    latest_believable = (time.time() if now is None else now) + CLOCK_SKEW.total_seconds()
    newest: float | None = None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                created = archive_time(entry.name)
                if created is not None and (moment := created.timestamp()) <= latest_believable:
                    newest = moment if newest is None else max(newest, moment)
    except OSError:
        return None  # no backup directory (yet): no archive
    return newest


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second (the API's convention)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    created_at: datetime
    """When the snapshot was taken (UTC); retention ages backups by it."""
    engine: str
    """`postgresql` or `sqlite`: a backup restores only into the same engine."""
    server_version: str
    database: str
    """The name of the database that was backed up (informational)."""
    migration_head: str | None
    """The newest migration applied in the snapshot (None: the database had no schema)."""
    app_version: str
    duration_s: float
    tables: dict[str, int]
    """Rows per table in the snapshot; verify compares a real restore against them."""
    files: dict[str, str]
    """SHA-256 of every other file in the archive."""

    def to_json(self) -> bytes:
        data = asdict(self)
        data["created_at"] = format_time(self.created_at)
        data["duration_s"] = round(self.duration_s, 3)
        return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Manifest:
        """Parse and validate; any problem is a one-line BackupError naming `source`."""
        try:
            data = json.loads(raw)
        # ValueError: also UnicodeDecodeError and integers over int()'s digit limit; RecursionError: deep nesting.
        except (ValueError, RecursionError):
            raise BackupError(f"{source}: manifest.json is not valid JSON") from None
        if not isinstance(data, dict):
            raise BackupError(f"{source}: manifest.json is not a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BackupError(f"{source}: manifest.json has no valid format_version")
        if version > FORMAT_VERSION:
            raise BackupError(
                f"{source}: backup format {version} is newer than this market understands "
                f"({FORMAT_VERSION}); restore it with a newer market"
            )
        missing = [key for key in cls.__dataclass_fields__ if key not in data]
        if missing:
            raise BackupError(f"{source}: manifest.json lacks {', '.join(missing)}")
        try:
            return cls(
                format_version=version,
                created_at=_timestamp(data["created_at"]),
                engine=_choice(data["engine"], ENGINES),
                server_version=_text(data["server_version"]),
                database=_text(data["database"]),
                migration_head=None if data["migration_head"] is None else _text(data["migration_head"]),
                app_version=_text(data["app_version"]),
                duration_s=_number(data["duration_s"]),
                tables=_mapping(data["tables"], _count),
                files=_files(data["files"]),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise BackupError(f"{source}: manifest.json is invalid: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    """The message of a validation error, cut so that a huge value in the manifest cannot flood the line."""
    message = str(exc)
    return message if len(message) <= 200 else message[:200] + "…"


def _timestamp(value: Any) -> datetime:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError("created_at has no time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("created_at is out of range") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _choice(value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"engine must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    number = float(value) if isinstance(value, float) or abs(value) <= 2**53 else math.inf
    if not math.isfinite(number):  # 1e999 reads as inf; float() of a 400-digit int overflows
        raise ValueError("expected a finite number")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a row count, got {value!r}")
    return value


def _mapping(value: Any, check: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return {_text(key): check(item) for key, item in value.items()}


def _files(value: Any) -> dict[str, str]:
    files = _mapping(value, _text)
    if not files:
        raise ValueError("files is empty")
    for name, digest in files.items():
        if name == MANIFEST_NAME or not _FILE_NAME.fullmatch(name):
            raise ValueError(f"bad file name {name!r}")
        if not _SHA256.fullmatch(digest):
            raise ValueError(f"bad sha256 for {name}")
    return files
