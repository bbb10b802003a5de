"""Files and folders only the service's own user may read: the SQLite database (with its -wal and -shm), the
generated signing key, metrics snapshots, backups and their locks. All of them hold secrets or personal data.

Modes are given explicitly where each file is created. A process umask would do it in one line, but it leaks
into child processes (pg_dump) and into every library's files, so it is not used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as 0700 folders. A folder that already exists keeps its mode: it
    may be shared on purpose (the working directory, /srv)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another worker made it in between
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """`os.open` for a file that must be 0600, even if an older one was left with a wider mode."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE)
    # Only the owner may chmod: a file another account made, and lets us write, stays as its owner wants.
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def write_private_text(path: Path, text: str) -> None:
    """Write `text` to `path` (replacing its content) as a 0600 file."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as f:
        f.write(text)


def private_sqlite_file(path: Path) -> None:
    """Make the SQLite database file 0600 before any engine opens it: SQLite creates -wal and -shm with the
    main file's permissions. A database from before this rule (0644) is tightened, with its side files."""
    private_dir(path.parent)
    os.close(open_private(path, os.O_RDWR))
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        # Gone between the look and the chmod: SQLite removes its side files when the last connection closes.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(side, PRIVATE_FILE_MODE)
