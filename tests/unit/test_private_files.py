"""The generated signing key and the metrics snapshots are readable by the service's own user only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from market.adapters.security.tokens import load_or_create_secret_key
from market.telemetry.prometheus import SnapshotDirectory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_generated_signing_key_is_0600_in_a_0700_var_folder(tmp_path):
    var = tmp_path / "var"
    load_or_create_secret_key(var)
    assert _mode(var) == 0o700
    assert _mode(var / "secret_key") == 0o600


def test_metrics_snapshots_are_0600_in_a_0700_folder_even_over_a_stale_wider_file(tmp_path):
    directory = SnapshotDirectory(tmp_path / "var" / "metrics")
    directory.write({"m": 1})  # type: ignore[arg-type]
    own = directory.directory / f"{os.getpid()}.json"
    stale = own.with_suffix(".tmp")  # a half-written file left by a crash, with the old mode
    stale.write_text("{}")
    os.chmod(stale, 0o644)
    directory.write({"m": 2})  # type: ignore[arg-type]
    assert _mode(directory.directory) == _mode(directory.directory.parent) == 0o700
    assert _mode(own) == 0o600
