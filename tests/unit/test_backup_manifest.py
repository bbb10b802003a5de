"""The backup manifest, archive names and the daily schedule's arithmetic."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, time

import pytest

from market.ops.backups.errors import BackupError
from market.ops.backups.manifest import (
    FORMAT_VERSION,
    Manifest,
    archive_name,
    is_archive_name,
)
from market.ops.backups.schedule import next_run

T0 = datetime(2026, 11, 28, 13, 33, 41, tzinfo=UTC)
MANIFEST = Manifest(
    format_version=FORMAT_VERSION,
    created_at=T0,
    engine="postgresql",
    server_version="15.20",
    database="market",
    migration_head="0001_initial",
    app_version="0.1.0",
    duration_s=1.23456,
    tables={"users": 5, "items": 2000, "market_migrations": 1},
    files={"database.dump": "a" * 64},
)


def _json(**changes: object) -> bytes:
    data = json.loads(MANIFEST.to_json())
    data.update(changes)
    return json.dumps(data).encode()


def test_manifest_has_exactly_the_documented_keys_and_round_trips():
    data = json.loads(MANIFEST.to_json())
    assert list(data) == [
        "format_version",
        "created_at",
        "engine",
        "server_version",
        "database",
        "migration_head",
        "app_version",
        "duration_s",
        "tables",
        "files",
    ]
    assert data["created_at"] == "2026-11-28T13:33:41Z"
    assert Manifest.from_json(MANIFEST.to_json(), "x") == replace(MANIFEST, duration_s=1.235)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (_json(format_version=FORMAT_VERSION + 1), "newer than this market understands"),
        (_json(format_version="1"), "no valid format_version"),
        (_json(engine="mysql"), "engine must be one of"),
        (_json(tables={"items": -1}), "expected a row count"),
        (_json(files={"../etc/passwd": "a" * 64}), "bad file name"),
        (_json(files={"database.dump": "not-a-digest"}), "bad sha256"),
        (_json(created_at="2026-11-28T13:33:41"), "no time zone"),
        # Each of these once escaped as another exception (RecursionError, OverflowError, ValueError).
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"format_version": 1, "tables": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "not valid JSON"),
        (b'{"format_version": ' + b"1" * 5_000 + b"}", "not valid JSON"),  # over int()'s 4300 digits
        (b"\xff\xfe{}", "not valid JSON"),
        (_json(duration_s=10**400), "expected a finite number"),
        (_json(duration_s=float("nan")), "expected a finite number"),
        (_json(created_at="0001-01-01T00:00:00+01:00"), "created_at"),
        (_json(created_at=12), "expected a string"),
        (_json(tables=[]), "expected an object"),
    ],
)
def test_a_bad_manifest_is_refused_with_one_line_naming_the_archive(raw, expected):
    with pytest.raises(BackupError) as caught:
        Manifest.from_json(raw, "market-x.tar.gz")
    message = str(caught.value)
    assert expected in message and message.startswith("market-x.tar.gz: ")
    assert "\n" not in message


def test_a_manifest_missing_keys_names_them():
    data = json.loads(MANIFEST.to_json())
    del data["tables"], data["files"]
    with pytest.raises(BackupError, match="lacks tables, files"):
        Manifest.from_json(json.dumps(data).encode(), "x")


def test_archive_names_are_utc_timestamps():
    assert archive_name(T0) == "market-20261128T133341Z.tar.gz"
    assert is_archive_name("market-20261128T133341Z.tar.gz")
    for name in (
        "market-20261128T133341Z.tar.gz.verified.json",
        ".market-20261128T133341Z.tar.gz.1234.partial",
        "market-latest.tar.gz",
    ):
        assert not is_archive_name(name)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 1, 1, 2, 59, tzinfo=UTC), datetime(2026, 1, 1, 3, 0, tzinfo=UTC)),
        (datetime(2026, 1, 1, 3, 0, tzinfo=UTC), datetime(2026, 1, 2, 3, 0, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), datetime(2027, 1, 1, 3, 0, tzinfo=UTC)),
    ],
)
def test_the_next_daily_run_is_the_first_slot_strictly_after_now(now, expected):
    assert next_run(now, time(3, 0)) == expected
