"""Several `market serve` replicas (each with its own workers) on one PostgreSQL database and one Redis, behind
HAProxy (Debian's package) health-checking /health/ready: the production topology, on loopback, for the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.live_server import LiveServer, free_port, start_server, stop_server

HAPROXY = "/usr/sbin/haproxy"
REPLICA_HEADER = "x-market-replica"
"""Set by the balancer on every response: the name of the replica that answered (r1, r2, ...)."""

_CONFIG = """global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 2
    option redispatch

frontend market
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 300ms fastinter 200ms fall 2 rise 2
    http-response set-header X-Market-Replica %s
{servers}
"""


@dataclass
class Topology:
    """The balancer's URL, the replicas (by name), the database URL and the shared environment."""

    url: str
    replicas: dict[str, LiveServer]
    database_url: str
    env: dict[str, str]
    workdir: Path
    haproxy: subprocess.Popen[bytes]
    killed: set[str] = field(default_factory=set)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, limits=httpx.Limits(max_connections=100))

    def kill(self, name: str) -> None:
        """SIGKILL a replica: its server process and every worker it started, with no chance to clean up."""
        process = self.replicas[name].process
        for pid in [*_children(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
        self.killed.add(name)

    def stop(self) -> None:
        self.haproxy.terminate()
        try:
            self.haproxy.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.haproxy.kill()
        with ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(stop_server, [r for n, r in self.replicas.items() if n not in self.killed]))


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (uvicorn's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def start_topology(
    database_url: str,
    workdir: Path,
    *,
    hosts: tuple[str, ...] = ("a", "a", "b"),
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> Topology:
    """One replica of `workers` workers per entry of `hosts`, started in parallel, then HAProxy in front of them,
    ready once every replica passes its health check. Replicas on the same "host" share a working folder and
    its var folder (MARKET_VAR_DIR), as two servers on one machine would; backups go to one shared folder
    (a shared volume); the signing key is shared through MARKET_SECRET_KEY."""
    shared = {
        "MARKET_SECRET_KEY": "scale-test-signing-key-" + uuid.uuid4().hex,
        "MARKET_BACKUP_DIR": str(workdir / "backups"),
        **(env or {}),
    }
    names = [f"r{n + 1}" for n in range(len(hosts))]

    def start(host: str) -> LiveServer:
        folder = workdir / f"host-{host}"
        folder.mkdir(exist_ok=True)
        # Six workers importing at once on two busy cores take a while.
        return start_server(database_url, folder, "postgresql", shared, ("--workers", str(workers)), 120)

    with ThreadPoolExecutor(len(hosts)) as pool:
        started = list(pool.map(start, hosts))
    servers = dict(zip(names, started, strict=True))
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        _CONFIG.format(
            port=port,
            servers="\n".join(
                f"    server {name} {server.base_url.removeprefix('http://')} check"
                for name, server in servers.items()
            ),
        )
    )
    log = (workdir / "haproxy.log").open("wb")
    haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    topology = Topology(f"http://127.0.0.1:{port}", servers, database_url, shared, workdir, haproxy)
    deadline = time.monotonic() + 20
    seen: set[str] = set()
    while seen != set(names):
        if haproxy.poll() is not None or time.monotonic() > deadline:
            topology.stop()
            raise RuntimeError(f"the balancer never reached every replica (saw {seen}):\n{_read(workdir)}")
        try:
            r = httpx.get(topology.url + "/health/ready", timeout=2)
            if r.status_code == 200:
                seen.add(r.headers[REPLICA_HEADER])
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return topology


def _read(workdir: Path) -> str:
    return (workdir / "haproxy.log").read_text(errors="replace")
