"""What session recording costs: `GET /api/v1/items?limit=20` with an `X-Session-Id` header through `market serve`
(PostgreSQL, one uvicorn worker, telemetry exporters off) with recording on (the default) and off
(`MARKET_SESSION_RECORDING=0`), side by side: both servers run at once on the same seeded database, wrk drives
one at a time, interleaved round by round. Prints req/s, p50, p99, server CPU per request and the ratio on/off
(target >= 0.95x), then what the recording stored: rows, `pg_total_relation_size('session_entries')` (table,
TOAST and indexes) per row, and so per 1 000 000 requests. Nothing is asserted.

    .venv/bin/python benchmarks/session_recording.py [--duration 10] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import asyncpg
from _harness import (
    Server,
    add_database_arguments,
    market_server,
    print_environment,
    seeded_database,
    workdir,
)

PATH = "/api/v1/items?limit=20"
SESSION = "bench-session-0123456789abcdef"  # 30 characters: a typical client-made id
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
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


def wrk(server: Server, args: argparse.Namespace, duration_s: int) -> Run:
    before = server.cpu_seconds()
    command = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{duration_s}s", "--latency"]
    command += ["--timeout", "5s", "-H", f"X-Session-Id: {SESSION}", server.base_url + PATH]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    after = server.cpu_seconds()
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx[1]) if non_2xx else 0
    cpu = (after - before) / requests * 1e6 if before is not None and after is not None and requests else None
    return Run(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        p99_ms=_ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
        requests=requests,
        errors=errors,
        cpu_us_per_request=cpu,
    )


def _row(name: str, run: Run) -> str:
    cpu = f"{run.cpu_us_per_request:7.0f}" if run.cpu_us_per_request is not None else "      -"
    return f"  {name:<22} {run.rps:9.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} {cpu}" + (
        f"  errors: {run.errors}" if run.errors else ""
    )


async def _in_process_cost(url: str, entries: int = 20_000) -> tuple[float, float, float]:
    """(µs to record one entry on the request path, µs of this process's CPU to write one in a batch, ms of
    wall time per batch of 2 000), measured on the recorder and store the service uses, against the database."""
    from datetime import timedelta

    from market.adapters.db.database import Database
    from market.adapters.db.sessions import SqlSessionStore
    from market.config import Settings
    from market.telemetry.sessions import BATCH, SessionRecording

    database = Database(Settings.from_env({"MARKET_DATABASE_URL": url}, dotenv=None).database)
    await database.start()
    try:
        recording = SessionRecording(
            SqlSessionStore(database), retention=timedelta(days=30), capacity=entries
        )
        started = time.perf_counter()
        for n in range(entries):
            recording.record_request(
                SESSION, time.time(), "GET", "/api/v1/items", 200, 0.004, f"{n:032x}", None, None, None
            )
        record_us = (time.perf_counter() - started) / entries * 1e6
        cpu, wall, batches = time.process_time(), time.perf_counter(), 0
        raw = recording._requests  # one batch at a time, as the writer takes them
        for start in range(0, entries, BATCH):
            recording._requests = raw[start : start + BATCH]
            await recording.flush()
            batches += 1
        write_us = (time.process_time() - cpu) / entries * 1e6
        batch_ms = (time.perf_counter() - wall) / batches * 1e3
        return record_us, write_us, batch_ms
    finally:
        await database.close()


async def _storage(url: str) -> tuple[int, int, int]:
    """(rows, total bytes with indexes, heap bytes) of session_entries, after VACUUM ANALYZE."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE session_entries")
        rows = await connection.fetchval("SELECT count(*) FROM session_entries")
        total = await connection.fetchval("SELECT pg_total_relation_size('session_entries')")
        heap = await connection.fetchval("SELECT pg_relation_size('session_entries')")
        return int(rows), int(total), int(heap)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=20_000, sellers=20)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of discarded load per server first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args()
    if shutil.which(args.wrk) is None:
        sys.exit("wrk is needed (Debian: apt-get install -y wrk)")

    print_environment()
    print(f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s GET {PATH}, X-Session-Id set")
    with workdir() as cwd, seeded_database(args, cwd) as url:
        servers = [
            market_server("recording on", url, cwd, MARKET_RATE_LIMITS="off"),
            market_server("recording off", url, cwd, MARKET_RATE_LIMITS="off", MARKET_SESSION_RECORDING="0"),
        ]
        results: dict[str, list[Run]] = {server.name: [] for server in servers}
        try:
            for server in servers:
                server.start()
            for server in servers:
                wrk(server, args, args.warmup)
            for round_number in range(1, args.rounds + 1):
                # Alternate which goes first, so neither always runs on a machine warmed (or slowed) by the other.
                order = servers if round_number % 2 else list(reversed(servers))
                load = f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
                print(
                    f"round {round_number}:{'req/s':>27} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}  {load}"
                )
                for server in order:
                    run = wrk(server, args, args.duration)
                    results[server.name].append(run)
                    print(_row(server.name, run))
            time.sleep(2)  # the recorder writes every second: let the last batch land
            recorded = sum(r.requests for r in results["recording on"])
        finally:
            for server in servers:
                server.stop()
        rows, total, heap = asyncio.run(_storage(url))
        record_us, write_us, batch_ms = asyncio.run(_in_process_cost(url))

    print(f"\nmedians over {args.rounds} rounds:{'req/s':>14} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}")
    medians = {}
    for name, runs in results.items():
        cpus = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
        medians[name] = Run(
            rps=statistics.median(r.rps for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            requests=sum(r.requests for r in runs),
            errors=sum(r.errors for r in runs),
            cpu_us_per_request=statistics.median(cpus) if cpus else None,
        )
        print(_row(name, medians[name]))
    on, off = medians["recording on"], medians["recording off"]
    per_round = ", ".join(
        f"{a.rps / b.rps:.2f}" for a, b in zip(results["recording on"], results["recording off"], strict=True)
    )
    print(f"ratio on/off: {on.rps / off.rps:.2f}x (per round: {per_round}; target >= 0.95x)")
    if on.cpu_us_per_request and off.cpu_us_per_request:
        print(
            f"  server CPU per request: +{on.cpu_us_per_request - off.cpu_us_per_request:.0f} µs with recording"
        )
    print(
        f"in process: recording an entry {record_us:.1f} µs on the request path; writing it {write_us:.1f} µs of"
        f" the server's CPU in a batch (a batch of 2 000: {batch_ms:.0f} ms wall, COPY)"
    )
    print(
        f"storage: {rows} rows for ~{recorded} measured requests (+ warm-up); session_entries {total / 1e6:.1f} MB"
        f" with indexes ({heap / 1e6:.1f} MB heap): {total / max(rows, 1):.0f} bytes per request"
        f" ({heap / max(rows, 1):.0f} heap) -> {total / max(rows, 1) * 1e6 / 1e9:.2f} GB per 1 000 000 requests"
    )


if __name__ == "__main__":
    main()
