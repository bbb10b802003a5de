"""Metrics snapshots are merged within one `market serve` (its workers), never across servers that share a
var folder: each replica's /metrics counts its own work, and Prometheus adds the replicas up."""

from __future__ import annotations

import socket
import subprocess
import sys

from market.telemetry.prometheus import GROUP_VARIABLE, SnapshotDirectory, process_group


def test_a_server_merges_its_own_workers_snapshots_and_not_another_servers(tmp_path):
    root = tmp_path / "metrics"
    replica_a, replica_b = SnapshotDirectory(root, "host-1"), SnapshotDirectory(root, "host-2")
    replica_a.write({"from_a": {}})
    replica_b.write({"from_b": {}})
    # The same process stands in for a sibling worker of each group: its snapshot is someone else's file.
    sibling = replica_a.directory / "999999999.json"
    sibling.write_text('{"sibling_of_a": {}}')
    assert replica_a.others() == [{"sibling_of_a": {}}]
    assert replica_b.others() == []


def test_clearing_a_group_leaves_live_groups_and_drops_this_hosts_dead_ones(tmp_path):
    root = tmp_path / "metrics"
    host = socket.gethostname()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(finished.stdout)
    ours, other_host, dead = (
        SnapshotDirectory(root, f"{host}-1"),
        SnapshotDirectory(root, "elsewhere-1"),
        SnapshotDirectory(root, f"{host}-{dead_pid}"),
    )
    for directory in (ours, other_host, dead):
        directory.write({"m": {}})
    (root / "123.json").write_text("{}")  # the flat layout of older versions
    ours.clear()
    assert not ours.directory.exists()
    assert not dead.directory.exists()
    assert other_host.directory.exists()
    assert not (root / "123.json").exists()


def test_the_group_comes_from_market_serve_through_the_environment(monkeypatch):
    monkeypatch.setenv(GROUP_VARIABLE, "web-7-4242")
    assert process_group() == "web-7-4242"
    monkeypatch.delenv(GROUP_VARIABLE)
    assert process_group().startswith(socket.gethostname() + "-")
