"""Shared plumbing of the benchmarks: a scratch PostgreSQL database (created, seeded, always dropped),
servers in their own processes, and process CPU readings. Nothing here asserts a timing."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_ADMIN_URL = os.environ.get(
    "MARKET_BENCH_POSTGRES_URL",
    os.environ.get("MARKET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
# Telemetry off: no exporter, no Sentry, no console spans. Variants add OTEL_SDK_DISABLED on top.
_TELEMETRY_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "SENTRY_DSN",
    "MARKET_TELEMETRY_CONSOLE",
)


def add_connection_arguments(parser: argparse.ArgumentParser, database_url_help: str) -> None:
    parser.add_argument(
        "--admin-url",
        default=DEFAULT_ADMIN_URL,
        help="PostgreSQL role that may create databases [MARKET_BENCH_POSTGRES_URL] (default: %(default)s)",
    )
    parser.add_argument("--database-url", default=None, help=database_url_help)


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(
        parser, "Use this already seeded database instead (it is neither seeded nor dropped)."
    )
    parser.add_argument("--sellers", type=int, default=100)
    parser.add_argument("--items", type=int, default=100_000)


def print_environment() -> None:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()};"
        f" uvicorn event loop {loop}, HTTP parser {http}"
    )


def _admin(admin_url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def market_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TELEMETRY_VARIABLES}
    env.update({"MARKET_DATABASE_URL": database_url, "MARKET_VAR_DIR": str(var_dir), **extra})
    return env


@contextmanager
def seeded_database(
    args: argparse.Namespace, workdir: Path, python: str = sys.executable, prefix: str = "market_bench"
) -> Iterator[str]:
    """A database URL: `--database-url` as is, or a fresh database seeded with `market db seed` (the seed
    time is printed) and dropped on the way out, whatever happens. `python` picks the build that migrates
    and seeds it (each build reads a schema of its own version)."""
    if args.database_url and python == sys.executable:
        print(f"database: {args.database_url} (given; not seeded)")
        yield args.database_url
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(args.admin_url, f'CREATE DATABASE "{name}"')
    try:
        url = _database_url(args.admin_url, name)
        command = [python, "-m", "market", "db", "seed", "--sellers", str(args.sellers)]
        command += ["--items", str(args.items)]
        started = time.perf_counter()
        done = subprocess.run(
            command,
            env=market_env(url, workdir / "var"),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"market db seed failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        said = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        print(
            f"seed: {args.sellers} sellers, {args.items} items on PostgreSQL in {elapsed:.1f} s wall"
            f" (the command says: {said!r})"
        )
        yield url
    finally:
        _admin(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"database {name} dropped")


@contextmanager
def empty_database(admin_url: str, prefix: str = "market_bench", keep: bool = False) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped on the way out whatever happens (unless
    `keep`: then its URL is printed)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(admin_url, name)
    finally:
        if keep:
            print(f"database kept: {_database_url(admin_url, name)}")
        else:
            _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"database {name} dropped")


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="market-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkRun:
    """One wrk run against one server: throughput, latency, failures (socket errors and non-2xx answers) and the
    server's CPU per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_request: float | None


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(
    server: Server,
    target: str,
    duration_s: int,
    *,
    wrk: str = "wrk",
    threads: int = 1,
    connections: int = 32,
    extra: Sequence[str] = (),
) -> WrkRun:
    """`wrk --latency` on `server.base_url + target` (`extra`: more wrk arguments, e.g. a header or a script),
    parsed, with the server's CPU over the run."""
    before = server.cpu_seconds()
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s"]
    command += [*extra, server.base_url + target]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    after = server.cpu_seconds()
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx[1]) if non_2xx else 0
    cpu = (after - before) / requests * 1e6 if before is not None and after is not None and requests else None
    return WrkRun(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        p99_ms=_ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
        requests=requests,
        errors=errors,
        cpu_us_per_request=cpu,
    )


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid` (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One server process on 127.0.0.1, its output in a log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> None:
        log = self.cwd / f"{self.name.replace(' ', '_')}-{self.port}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port)],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + self.ready_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process so far (Linux /proc), None elsewhere."""
        if self.process is None:
            return None
        times = process_cpu(self.process.pid)
        return None if times is None else sum(times)


def process_cpu(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process so far (Linux /proc), None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def postgres_cpu(database_url: str) -> dict[int, float]:
    """User + system CPU seconds so far of the PostgreSQL processes that work for `database_url`'s database:
    its backends, and the server's own processes (WAL writer, checkpointer, ...: shared with any other
    database's work). By process id, from /proc: meaningful only for a PostgreSQL on this machine (Linux).
    Subtract two readings with `cpu_between`."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
        )
    finally:
        await connection.close()
    readings = {}
    for row in rows:
        times = process_cpu(row["pid"])
        if times is not None:
            readings[row["pid"]] = sum(times)
    return readings


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two `postgres_cpu` readings; a process started meanwhile counts whole (one
    that exited meanwhile is missed)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def market_server(
    name: str, database_url: str, cwd: Path, python: str = sys.executable, **extra_env: str
) -> Server:
    """`market serve`: one uvicorn worker, migrations at start, JSON access log to its log file. `python` may
    be another checkout's interpreter, to measure two builds side by side."""
    return Server(
        name=name,
        command=[python, "-m", "market", "serve", "--workers", "1"],
        env=market_env(database_url, cwd / "var", **extra_env),
        cwd=cwd,
        ready_path="/health/ready",
    )


def floor_server(database_url: str, cwd: Path) -> Server:
    """The bare Litestar + raw asyncpg app of floor_app.py under the production stack (uvicorn on uvloop with
    httptools, as `market serve` runs), without access log."""
    return Server(
        name="floor",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "floor_app:create_app",
            "--app-dir",
            str(BENCH_DIR),
            "--workers",
            "1",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
        ],
        env={**market_env(database_url, cwd / "var"), "FLOOR_DATABASE_URL": database_url},
        cwd=cwd,
        ready_path="/api/v1/items?limit=1",
    )


def valgrind_instructions(command: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`command` run under valgrind (cachegrind without cache simulation: instructions only, which other load on
    the machine does not change): the instructions it executed, and its standard output."""
    full = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *command]
    done = subprocess.run(full, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in:\n{done.stderr[-2000:]}")
    return int(match[1].replace(",", "")), done.stdout


HOUR_S = 3600.0


def quiet_background_work() -> None:
    """In-process counts: loops whose cost is per second of wall time (webhook polling, business gauges) run
    once an hour, whatever the version has of them; under valgrind a second is a few requests."""
    from market.adapters.webhooks.worker import WebhookDeliveryWorker

    init = WebhookDeliveryWorker.__init__
    if init.__kwdefaults__ and "poll_interval_s" in init.__kwdefaults__:
        init.__kwdefaults__["poll_interval_s"] = HOUR_S
    else:  # older versions: a positional default
        names = init.__code__.co_varnames[1 : init.__code__.co_argcount]
        defaults = list(init.__defaults__ or ())
        at = names.index("poll_interval_s") - (len(names) - len(defaults))
        defaults[at] = HOUR_S
        init.__defaults__ = tuple(defaults)
    from market.adapters.telemetry import business

    business.refresh_business_gauges_forever.__defaults__ = (HOUR_S,)


def production_gc() -> None:
    """In-process counts: the garbage collector as `market serve`'s workers run it (a high generation-0
    threshold, start-up frozen), called once the app is built. Without it the counts took the interpreter's
    defaults, and at 100 % sampling charged every request 40-120 us of collections over the spans waiting for
    export that production never runs."""
    try:
        from market.bootstrap.app import tune_gc
    except ImportError:  # versions before tune_gc: what their app_factory set
        import gc

        gc.set_threshold(20_000, 50, 100)
        gc.freeze()
        return
    tune_gc()


# What an in-process count sets in its environment: no rate limits, the same hash seed in every run, quiet logs,
# and the periodic jobs (reconciliation, alert evaluation, the probe) out of the way.
IN_PROCESS_ENV = {
    "MARKET_RATE_LIMITS": "off",
    "PYTHONHASHSEED": "0",
    "MARKET_LOG_LEVEL": "WARNING",
    "MARKET_RECONCILE_INTERVAL": "86400",
    "MARKET_ALERT_EVAL_INTERVAL": "3600",
    "MARKET_PROBE_INTERVAL": "0",
}


# --- the ASGI app in this process (the valgrind counts) --------------------------------------------------------


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[Any]:
    """`app` between its ASGI lifespan's startup and shutdown, as a server would run it."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan


async def request(
    app: Any,
    method: str,
    path: str,
    query: bytes = b"",
    body: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> int:
    """One HTTP request through `app`, as uvicorn would pass it from 127.0.0.1: the response's status."""
    status: list[int] = []
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, object]:
        return message

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])  # type: ignore[arg-type]

    sent = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")]
    if body:
        sent += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [*sent, *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return status[0]
