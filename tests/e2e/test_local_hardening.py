"""What a started service leaves on its machine: private files, and a warning when the sandbox is exposed."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer, register, serving

SNAPSHOT_WAIT_S = 60  # the server writes its metrics snapshot every few seconds; CPU contention slows it


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _warnings(server: LiveServer) -> list[dict[str, object]]:
    records = []
    for line in server.log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "WARNING":
            records.append(record)
    return records


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """The sandbox gateway on SQLite, bound to every interface (as in a careless container deployment)."""
    workdir = tmp_path_factory.mktemp("exposed")
    with serving("sqlite", workdir, {"MARKET_HOST": "0.0.0.0"}) as server:
        yield server, workdir


def test_the_database_its_wal_and_shm_the_key_and_metrics_snapshots_are_private_to_the_service(exposed):
    server, workdir = exposed
    database = workdir / "market.db"
    # A reader holding a WAL snapshot keeps -wal and -shm in place while the service writes through HTTP.
    reader = sqlite3.connect(database)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM users").fetchone()
        with server.client() as client:
            register(client, password=f"private files {uuid.uuid4().hex}")
        siblings = {p.name: _mode(p) for p in workdir.glob("market.db*")}
    finally:
        reader.close()
    assert {"market.db", "market.db-wal", "market.db-shm"} <= set(siblings)
    assert siblings == dict.fromkeys(siblings, 0o600)

    var = workdir / "var"
    assert _mode(var) == 0o700
    assert _mode(var / "secret_key") == 0o600
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while not list((var / "metrics").glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    snapshots = list((var / "metrics").glob("*/*.json"))
    assert snapshots, "no metrics snapshot was written"
    assert _mode(var / "metrics") == 0o700
    assert {_mode(p.parent) for p in snapshots} == {0o700}  # its own serve group's folder
    assert {_mode(p) for p in snapshots} == {0o600}


def test_the_sandbox_gateway_on_a_non_loopback_interface_warns_once_at_start(exposed):
    server, _ = exposed
    warnings = [w for w in _warnings(server) if "sandbox" in str(w.get("message", ""))]
    assert len(warnings) == 1, warnings
    assert warnings[0]["host"] == "0.0.0.0"
    assert "tok_visa" in str(warnings[0]["message"])


def test_the_sandbox_gateway_on_loopback_starts_without_that_warning(live_server):
    if live_server.engine != "sqlite":
        pytest.skip("one engine is enough: the warning depends on the bind address only")
    assert not [w for w in _warnings(live_server) if "sandbox" in str(w.get("message", ""))]
