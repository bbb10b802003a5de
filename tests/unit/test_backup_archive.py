"""The archive file on its own (no database): atomic publication and every way a damaged archive is caught."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market.ops.backups.archive import extract_archive, read_manifest, write_archive
from market.ops.backups.errors import BackupError
from market.ops.backups.manifest import FORMAT_VERSION, Manifest, archive_name

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
PAYLOAD = b"PGDMP" + os.urandom(200_000)  # incompressible, so that damage lands in the payload


def _manifest(**changes: object) -> Manifest:
    values: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "created_at": T0,
        "engine": "postgresql",
        "server_version": "15",
        "database": "market",
        "migration_head": "0001_initial",
        "app_version": "0.1.0",
        "duration_s": 0.5,
        "tables": {"items": 3},
        "files": {"database.dump": hashlib.sha256(PAYLOAD).hexdigest()},
    }
    values.update(changes)
    return Manifest(**values)  # type: ignore[arg-type]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "database.dump").write_bytes(PAYLOAD)
    backups = tmp_path / "backups"
    backups.mkdir()
    path = backups / archive_name(T0)
    write_archive(path, _manifest(), work)
    return path


def _accept(manifest: Manifest) -> None:
    pass


def _extract(path: Path, tmp_path: Path) -> Manifest:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return extract_archive(path, out, _accept)


def _repack(path: Path, members: list[tuple[str, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def test_an_archive_reads_back_with_its_manifest_first_and_private_permissions(archive, tmp_path):
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["manifest.json", "database.dump"]
    assert archive.stat().st_mode & 0o777 == 0o600
    assert read_manifest(archive) == _extract(archive, tmp_path) == _manifest()
    assert (tmp_path / "out" / "database.dump").read_bytes() == PAYLOAD
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no temporary file left


def test_an_existing_backup_is_never_overwritten(archive, tmp_path):
    before = archive.read_bytes()
    with pytest.raises(BackupError, match="already exists"):
        write_archive(archive, _manifest(), tmp_path / "work")
    assert archive.read_bytes() == before
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    # The manifest lists a payload that is not there: packing fails half-way through the archive.
    with pytest.raises(BackupError, match="cannot write"):
        write_archive(backups / archive_name(T0), _manifest(), tmp_path)
    assert list(backups.iterdir()) == []


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_archive_is_refused(archive, tmp_path, keep):
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BackupError, match="truncated or corrupt"):
        _extract(archive, tmp_path)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7, 0.95])
def test_a_flipped_byte_is_refused(archive, tmp_path, where):
    data = bytearray(archive.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="corrupt"):
        _extract(archive, tmp_path)


def test_a_payload_that_does_not_match_its_checksum_is_refused(archive, tmp_path):
    # A well-formed gzip and tar whose payload differs from what the manifest recorded.
    _repack(
        archive,
        [
            ("manifest.json", _manifest().to_json()),
            ("database.dump", PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])),
        ],
    )
    with pytest.raises(BackupError, match=r"checksum mismatch for database\.dump"):
        _extract(archive, tmp_path)


def test_an_archive_without_manifest_is_refused(archive, tmp_path):
    _repack(archive, [("database.dump", PAYLOAD)])
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        _extract(archive, tmp_path)
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        read_manifest(archive)


def test_a_newer_format_is_refused_before_anything_is_extracted(archive, tmp_path):
    manifest = json.loads(_manifest().to_json())
    manifest["format_version"] = FORMAT_VERSION + 1
    _repack(archive, [("manifest.json", json.dumps(manifest).encode()), ("database.dump", PAYLOAD)])
    with pytest.raises(BackupError, match="newer than this market understands"):
        _extract(archive, tmp_path)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "members",
    [
        [("manifest.json", b""), ("../../evil", b"x")],
        [("database.dump", PAYLOAD), ("manifest.json", b"")],
    ],
)
def test_unexpected_members_are_refused(archive, tmp_path, members):
    members = [(name, data or _manifest().to_json()) for name, data in members]
    _repack(archive, members)
    with pytest.raises(BackupError):
        _extract(archive, tmp_path)
    assert not (tmp_path / "evil").exists()


def test_something_that_is_not_gzip_at_all_is_refused(tmp_path):
    path = tmp_path / archive_name(T0)
    path.write_bytes(b"hello, I am not a backup")
    with pytest.raises(BackupError, match="truncated or corrupt"):
        _extract(path, tmp_path)
    with gzip.open(path, "wb") as f:
        f.write(b"not a tar either" * 100)
    with pytest.raises(BackupError, match="truncated or corrupt"):
        _extract(path, tmp_path)
