"""The archive file: written under a temporary name and published only once complete and on disk; read back
with every member's checksum and the gzip trailer checked before anything is trusted."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import tarfile
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from market.private_files import open_private

from .errors import BackupError
from .manifest import MANIFEST_NAME, Manifest

CHUNK = 1 << 20
PARTIAL_SUFFIX = ".partial"
"""Work files and unpublished archives are hidden (`.` prefix) and end with this: nothing that `list`,
`verify --latest` or `prune` would take for a backup."""
VERIFIED_SUFFIX = ".verified.json"
_MAX_MANIFEST_BYTES = 16 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def partial_path(directory: Path, name: str) -> Path:
    """A unique hidden name in `directory` for work in progress on `name`."""
    return directory / f".{name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_archive(final: Path, manifest: Manifest, payload_dir: Path, *, compresslevel: int = 6) -> int:
    """Pack `manifest.json` (first) and the manifest's files from `payload_dir` into `final`, atomically:
    nothing exists under `final` unless the whole archive was written and fsynced. Returns its size."""
    tmp = partial_path(final.parent, final.name)
    mtime = int(manifest.created_at.timestamp())
    try:
        with os.fdopen(_create_private(tmp), "wb") as raw:
            with (
                gzip.GzipFile(
                    filename="", fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=mtime
                ) as gz,
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                body = manifest.to_json()
                tar.addfile(_member(MANIFEST_NAME, len(body), mtime), io.BytesIO(body))
                for name in manifest.files:
                    path = payload_dir / name
                    with path.open("rb") as f:
                        tar.addfile(_member(name, path.stat().st_size, mtime), f)
            raw.flush()
            os.fsync(raw.fileno())
        _publish(tmp, final)
        fsync_directory(final.parent)
        return final.stat().st_size
    except OSError as exc:
        raise BackupError(f"cannot write {final}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


def _publish(tmp: Path, final: Path) -> None:
    """Give the complete file its real name without ever replacing an existing backup."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise BackupError(f"{final} already exists; not overwriting a backup") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Filesystems without hard links: rename, after checking (a narrow race, and only between two
        # creates in the same second).
        if final.exists():
            raise BackupError(f"{final} already exists; not overwriting a backup") from None
        os.replace(tmp, final)


def read_manifest(archive: Path) -> Manifest:
    """Only the manifest (the first member): cheap, for listing and pruning. Checksums are not checked."""
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            return _manifest_from(tar, next(iter(tar), None), archive.name)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive.name}: not a readable backup archive ({_reason(exc)})") from None
    except FileNotFoundError:
        raise BackupError(f"{archive}: no such backup file") from None
    except OSError as exc:
        raise BackupError(f"{archive.name}: cannot read: {exc.strerror or exc}") from None


def extract_archive(archive: Path, into: Path, accept: Callable[[Manifest], None]) -> Manifest:
    """Read the whole archive once: the manifest, then each file it lists into `into`, hashing as it goes,
    then the gzip trailer (CRC and length). `accept(manifest)` runs before any payload is extracted and may
    raise BackupError (wrong engine, …). Raises BackupError unless every check passes."""
    source = archive.name
    digests: dict[str, str] = {}
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                members = iter(tar)
                manifest = _manifest_from(tar, next(members, None), source)
                accept(manifest)
                for member in members:
                    if member.name not in manifest.files or not member.isfile() or member.name in digests:
                        raise BackupError(f"{source}: unexpected member {member.name!r}; not a market backup")
                    stream = tar.extractfile(member)
                    assert stream is not None
                    digests[member.name] = _copy_hashing(stream, into / member.name)
            while gz.read(CHUNK):  # the trailer is checked when the stream ends
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError(f"{source}: the archive is truncated or corrupt ({_reason(exc)})") from None
    except FileNotFoundError:
        raise BackupError(f"{archive}: no such backup file") from None
    except OSError as exc:
        raise BackupError(f"{source}: cannot extract: {exc.strerror or exc}") from None
    for name, expected in manifest.files.items():
        if name not in digests:
            raise BackupError(f"{source}: {name} is missing from the archive; it is truncated or corrupt")
        if digests[name] != expected:
            raise BackupError(f"{source}: checksum mismatch for {name}; the archive is corrupt")
    return manifest


def _manifest_from(tar: tarfile.TarFile, first: tarfile.TarInfo | None, source: str) -> Manifest:
    if first is None or first.name != MANIFEST_NAME or not first.isfile():
        raise BackupError(f"{source}: no manifest.json at the start of the archive; not a market backup")
    if first.size > _MAX_MANIFEST_BYTES:
        raise BackupError(f"{source}: manifest.json is implausibly large; not a market backup")
    stream = tar.extractfile(first)
    assert stream is not None
    return Manifest.from_json(stream.read(), source)


def _copy_hashing(stream: IO[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("xb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file so that readers see the old file or the whole new one."""
    tmp = partial_path(path.parent, path.name)
    try:
        with os.fdopen(_create_private(tmp), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _create_private(path: Path) -> int:
    """A new file only the service's user may read: backups and what is written beside them describe a
    database holding password hashes."""
    return open_private(path, os.O_WRONLY | os.O_EXCL)


def verified_marker(archive: Path) -> Path:
    return archive.with_name(archive.name + VERIFIED_SUFFIX)
