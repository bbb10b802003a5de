"""What session recording costs: `GET /api/v1/items?limit=20` with an `X-Session-Id` header through `market serve`
(PostgreSQL, one uvicorn worker, telemetry exporters off) with recording on (the default) and off
(`MARKET_SESSION_RECORDING=0`), side by side: both servers run at once on the same seeded database; first wrk
drives one at a time, interleaved round by round, then (`--together-rounds`) a wrk each drives both at once, so
that whatever else the machine runs slows both alike. Prints req/s, p50, p99, server CPU per request and the
ratio on/off (target >= 0.95x) per round and of the medians; then the recorder's own costs in this process
(the request path's µs, the writer's µs per entry, PostgreSQL's backend CPU per row, garbage collections) and
what the recording stored: rows, `pg_total_relation_size('session_entries')` (table, TOAST and indexes) per
row, and so per 1 000 000 requests. Nothing is asserted.

    .venv/bin/python benchmarks/session_recording.py [--duration 10] [--rounds 3] [--together-rounds 3]
    .venv/bin/python benchmarks/session_recording.py --in-process-only   # seconds: the recorder's own costs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
from _harness import (
    Server,
    WrkRun,
    add_database_arguments,
    empty_database,
    market_server,
    print_environment,
    run_wrk,
    seeded_database,
    workdir,
)

PATH = "/api/v1/items?limit=20"
SESSION = "bench-session-0123456789abcdef"  # 30 characters: a typical client-made id
Run = WrkRun


def wrk(server: Server, args: argparse.Namespace, duration_s: int) -> Run:
    return run_wrk(
        server,
        PATH,
        duration_s,
        wrk=args.wrk,
        threads=args.threads,
        connections=args.connections,
        extra=["-H", f"X-Session-Id: {SESSION}"],
    )


def _row(name: str, run: Run) -> str:
    cpu = f"{run.cpu_us_per_request:7.0f}" if run.cpu_us_per_request is not None else "      -"
    return f"  {name:<22} {run.rps:9.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} {cpu}" + (
        f"  errors: {run.errors}" if run.errors else ""
    )


@dataclass
class InProcess:
    record_us: float
    """µs of CPU to record one entry on the request path (best of the repeats)."""
    write_us: float
    """µs of this process's CPU to turn one entry into a row and COPY it, in batches of BATCH (median)."""
    batch_ms: float
    """Wall ms per batch (median)."""
    postgres_us: float | None
    """µs of the PostgreSQL backend's CPU per row written (its /proc; None when it is not on this machine)."""
    collections: tuple[int, int, int]
    """Garbage collections (generations 0, 1, 2) while recording and writing `entries` entries."""
    entries: int
    batch: int


def _backend_cpu_s(pids: list[int]) -> float | None:
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()  # noqa: SIM115
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _in_process_cost(url: str, batches: int = 10, repeats: int = 5) -> InProcess:
    """The recorder and store the service uses, against the database, through their public calls only (so that
    another checkout's build can be measured the same way: PYTHONPATH=../other/src): record a batch as
    requests would, then flush it as the writer does, `batches` times."""
    import gc
    from datetime import timedelta

    from market.adapters.db.database import Database
    from market.adapters.db.sessions import SqlSessionStore
    from market.config import Settings
    from market.telemetry.sessions import BATCH, SessionRecording

    settings = Settings.from_env({"MARKET_DATABASE_URL": url, "MARKET_DATABASE_POOL_SIZE": "1"}, dotenv=None)
    database = Database(settings.database)
    await database.start()
    await database.migrate()
    admin = await asyncpg.connect(url)
    try:
        pids = [
            r["pid"]
            for r in await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        recording = SessionRecording(
            SqlSessionStore(database), retention=timedelta(days=30), capacity=BATCH * 2
        )

        def record_batch(offset: int) -> float:
            now = time.time()
            started = time.process_time()
            for n in range(offset, offset + BATCH):
                recording.record_request(
                    SESSION, now, "GET", "/api/v1/items", 200, 0.004, f"{n:032x}", None, None, None
                )
            return (time.process_time() - started) / BATCH * 1e6

        record = [record_batch(0)]  # warm
        await recording.flush()
        gc.collect()
        before = [s["collections"] for s in gc.get_stats()]
        backend_before = _backend_cpu_s(pids)
        writes, walls = [], []
        for b in range(batches):
            record.append(record_batch(b * BATCH))
            cpu, wall = time.process_time(), time.perf_counter()
            await recording.flush()
            writes.append((time.process_time() - cpu) / BATCH * 1e6)
            walls.append((time.perf_counter() - wall) * 1e3)
        backend_after = _backend_cpu_s(pids)
        after = [s["collections"] for s in gc.get_stats()]
        for _ in range(repeats):  # the request path alone, best of: the least disturbed by other load
            record.append(record_batch(0))
            await recording.flush()
        postgres = (
            (backend_after - backend_before) / (batches * BATCH) * 1e6
            if backend_before is not None and backend_after is not None
            else None
        )
        await admin.execute("DELETE FROM session_entries WHERE session_id = $1", SESSION)
        return InProcess(
            record_us=min(record),
            write_us=statistics.median(writes),
            batch_ms=statistics.median(walls),
            postgres_us=postgres,
            collections=(after[0] - before[0], after[1] - before[1], after[2] - before[2]),
            entries=batches * BATCH,
            batch=BATCH,
        )
    finally:
        await admin.close()
        await database.close()


def _print_in_process(cost: InProcess) -> None:
    postgres = f"{cost.postgres_us:.1f} µs" if cost.postgres_us is not None else "not measured (remote)"
    print(
        f"in process: recording an entry {cost.record_us:.2f} µs of CPU on the request path (best of the"
        f" repeats); writing it {cost.write_us:.1f} µs of the server's CPU in a COPY batch (a batch of"
        f" {cost.batch}: median {cost.batch_ms:.0f} ms wall);"
        f" PostgreSQL's backend {postgres} of CPU per row; garbage collections (gen 0, 1, 2) while recording and"
        f" writing {cost.entries}: {cost.collections}"
    )


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


def _summary(title: str, results: dict[str, list[Run]]) -> None:
    print(f"\n{title:<36}{'req/s':>6} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}")
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
    pairs = list(zip(results["recording on"], results["recording off"], strict=True))
    ratios = [a.rps / b.rps for a, b in pairs]
    print(
        f"ratio on/off: {on.rps / off.rps:.2f}x of the medians; per round {', '.join(f'{r:.2f}' for r in ratios)},"
        f" their median {statistics.median(ratios):.2f}x (target >= 0.95x)"
    )
    if on.cpu_us_per_request and off.cpu_us_per_request:
        deltas = [
            a.cpu_us_per_request - b.cpu_us_per_request
            for a, b in pairs
            if a.cpu_us_per_request is not None and b.cpu_us_per_request is not None
        ]
        print(
            f"  server CPU per request with recording: {on.cpu_us_per_request - off.cpu_us_per_request:+.0f} µs"
            f" (medians); per round {', '.join(f'{d:+.0f}' for d in deltas)}, their median"
            f" {statistics.median(deltas):+.0f} µs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=20_000, sellers=20)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument(
        "--together-rounds",
        type=int,
        default=3,
        help="then rounds with both servers loaded at once, by a wrk each (default: %(default)s)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds of discarded load per server first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument(
        "--in-process-only",
        action="store_true",
        help="only the recorder's own costs, on an empty database (seconds; no servers, no wrk)",
    )
    args = parser.parse_args()
    if args.in_process_only:
        print_environment()
        with empty_database(args.admin_url) as url:
            _print_in_process(asyncio.run(_in_process_cost(url)))
        return
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
            # Both at once: whatever else the machine runs slows both alike, and the scheduler shares the
            # cores between two busy servers, so the one with more work per request answers fewer.
            together: dict[str, list[Run]] = {server.name: [] for server in servers}
            for round_number in range(1, args.together_rounds + 1):
                load = f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
                print(
                    f"both at once {round_number}:{'req/s':>20} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}  {load}"
                )
                with ThreadPoolExecutor(len(servers)) as pool:
                    runs = list(pool.map(lambda server: wrk(server, args, args.duration), servers))
                for server, run in zip(servers, runs, strict=True):
                    together[server.name].append(run)
                    print(_row(server.name, run))
            time.sleep(2)  # the recorder writes every second: let the last batch land
            recorded = sum(r.requests for r in results["recording on"] + together["recording on"])
        finally:
            for server in servers:
                server.stop()
        rows, total, heap = asyncio.run(_storage(url))
        in_process = asyncio.run(_in_process_cost(url))

    _summary(f"one at a time, medians over {args.rounds} rounds:", results)
    if args.together_rounds:
        _summary(f"both at once, medians over {args.together_rounds} rounds:", together)
    _print_in_process(in_process)
    print(
        f"storage: {rows} rows for ~{recorded} measured requests (+ warm-up); session_entries {total / 1e6:.1f} MB"
        f" with indexes ({heap / 1e6:.1f} MB heap): {total / max(rows, 1):.0f} bytes per request"
        f" ({heap / max(rows, 1):.0f} heap) -> {total / max(rows, 1) * 1e6 / 1e9:.2f} GB per 1 000 000 requests"
    )


if __name__ == "__main__":
    main()
