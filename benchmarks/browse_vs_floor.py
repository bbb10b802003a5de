"""`GET /api/v1/items?limit=20` through `market serve` versus the floor (floor_app.py: bare Litestar, the same
SQL on a raw asyncpg pool with asyncpg's defaults), on a fresh PostgreSQL database seeded with
`market db seed`. Each server is its own process; wrk drives one at a time, interleaved round by round
(market, market with OTEL_SDK_DISABLED, floor, market, ...). Prints req/s, p50, p99, the server's CPU per
request and the ratio market/floor. Nothing is asserted.

    .venv/bin/python benchmarks/browse_vs_floor.py [--duration 10] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import urllib.request
from pathlib import Path

from _harness import (
    Server,
    WrkRun,
    add_database_arguments,
    floor_server,
    market_server,
    print_environment,
    run_wrk,
    seeded_database,
    workdir,
)

PATH = "/api/v1/items?limit=20"
Run = WrkRun


def wrk(server: Server, args: argparse.Namespace, duration_s: int) -> Run:
    return run_wrk(server, PATH, duration_s, wrk=args.wrk, threads=args.threads, connections=args.connections)


class _ProcessTree(Server):
    """A server with worker processes (`market serve --workers N`): its CPU is the whole tree's."""

    def cpu_seconds(self) -> float | None:
        if self.process is None:
            return None
        total, pending = 0.0, [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue  # gone meanwhile
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _workers_server(url: str, cwd: Path, workers: int) -> Server:
    base = market_server(f"market --workers {workers}", url, cwd)
    command = [*base.command[: base.command.index("--workers")], "--workers", str(workers)]
    return _ProcessTree(name=base.name, command=command, env=base.env, cwd=cwd, ready_path=base.ready_path)


def _first_page_ids(server: Server) -> list[str]:
    with urllib.request.urlopen(server.base_url + PATH, timeout=10) as response:
        return [item["id"] for item in json.load(response)["items"]]


def _variant(spec: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = spec.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return f"market {name}", env


def _build(spec: str) -> tuple[str, str]:
    name, _, python = spec.partition("=")
    return name, python


def _row(name: str, run: Run) -> str:
    cpu = f"{run.cpu_us_per_request:7.0f}" if run.cpu_us_per_request is not None else "      -"
    return f"  {name:<34} {run.rps:9.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} {cpu}" + (
        f"  errors: {run.errors}" if run.errors else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of discarded load per server first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="another market server to measure, with extra environment (e.g. 'no access log:MARKET_LOG_LEVEL=WARNING')",
    )
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="NAME=PYTHON",
        help="another build of market to measure, by its interpreter (e.g. 'before=../before/.venv/bin/python'),"
        " on a database that build seeds",
    )
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="also `market serve --workers N` (telemetry off; CPU summed over its processes), e.g. 2",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="NAME",
        help="also print every server's ratio to this one (e.g. 'market' for telemetry costs)",
    )
    args = parser.parse_args()
    if shutil.which(args.wrk) is None:
        sys.exit("wrk is needed (Debian: apt-get install -y wrk)")

    print_environment()
    print(f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s GET {PATH}, 127.0.0.1 only")
    with workdir() as cwd, seeded_database(args, cwd) as url, contextlib.ExitStack() as builds:
        build_urls = {
            name: builds.enter_context(seeded_database(args, cwd, python=path))
            for name, path in map(_build, args.build)
        }
        servers = [
            market_server("market", url, cwd),
            market_server("market OTEL_SDK_DISABLED", url, cwd, OTEL_SDK_DISABLED="true"),
            *(market_server(name, url, cwd, **env) for name, env in map(_variant, args.variant)),
            *(
                market_server(f"market {name}", build_urls[name], cwd, python=path)
                for name, path in map(_build, args.build)
            ),
            *(_workers_server(url, cwd, n) for n in args.workers),
            floor_server(url, cwd),
        ]
        try:
            for server in servers:
                server.start()
            pages = {server.name: _first_page_ids(server) for server in servers}
            same = len({tuple(ids) for ids in pages.values()}) == 1
            print(f"first pages identical across servers: {'yes' if same else 'NO'}")
            for server in servers:
                wrk(server, args, args.warmup)

            results: dict[str, list[Run]] = {server.name: [] for server in servers}
            for round_number in range(1, args.rounds + 1):
                load = f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
                print(
                    f"round {round_number}:{'req/s':>39} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}  {load}"
                )
                for server in servers:
                    run = wrk(server, args, args.duration)
                    results[server.name].append(run)
                    print(_row(server.name, run))
        finally:
            for server in servers:
                server.stop()

    print(f"\nmedians over {args.rounds} rounds:{'req/s':>26} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>7}")
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
    floor = medians["floor"].rps
    for name in results:
        if name == "floor":
            continue
        per_round = ", ".join(
            f"{m.rps / f.rps:.2f}" for m, f in zip(results[name], results["floor"], strict=True)
        )
        print(
            f"ratio {name}/floor: {medians[name].rps / floor:.2f}x (per round: {per_round}; target >= 0.80x)"
        )
        market_cpu, floor_cpu = medians[name].cpu_us_per_request, medians["floor"].cpu_us_per_request
        if market_cpu and floor_cpu:
            # Less sensitive to other load on the machine than req/s: what each request costs the server.
            print(f"  server CPU per request, floor/{name}: {floor_cpu / market_cpu:.2f}x")
    if args.baseline in medians:
        base = medians[args.baseline]
        for name in results:
            if name in (args.baseline, "floor"):
                continue
            per_round = ", ".join(
                f"{m.rps / b.rps:.2f}" for m, b in zip(results[name], results[args.baseline], strict=True)
            )
            print(
                f"ratio {name}/{args.baseline}: {medians[name].rps / base.rps:.2f}x (per round: {per_round})"
            )


if __name__ == "__main__":
    main()
