"""Checkout throughput on PostgreSQL, one uvicorn worker: orders per second through the whole path
(idempotency claim, cart claim, order + stock reservation in one transaction, the sandbox charge, settling
the payment, emptying the cart) — `POST /api/v1/checkout` with `tok_visa`.

Seeds a fresh database (`market db seed`), inserts `--buyers` buyer accounts straight into the database
(hashing 1 000 passwords through the API would measure argon2, not checkout), signs their tokens with the
server's MARKET_SECRET_KEY, fills each cart over HTTP, then fires the checkouts from `--concurrency` parallel
clients in this process (`--client httpx`, the default) or from `wrk -t1 -c<concurrency>` running
checkout.lua (`--client wrk`: the issue's load generator, ≈ 0.15 ms of CPU per checkout against httpx's ≈ 1.3).
Prints orders/s, p50/p95/p99 latency, the outcome counts and the CPU per checkout
of the server, of the clients and of PostgreSQL (when it runs on this machine): what the machine's cores could
do at that cost. `--items-bought N` spreads the buyers over N items (default 1: one hot item's row lock, a
flash sale). Nothing is asserted.

Telemetry is on by default as the target states it (`--telemetry 10`): OTLP/HTTP spans and metrics at 10 %
head sampling and Sentry, to local sinks in this process (telemetry_cost.py's); `--telemetry off` or `100`.
`--before-src DIR` runs another checkout's `src` (e.g. `git archive main src | tar -x -C /tmp/before`) on the
same database, interleaved round by round (`--rounds`), each run with its own fresh buyers.

    .venv/bin/python benchmarks/checkout_throughput.py [--buyers 1000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import jwt
from _harness import (
    BENCH_DIR,
    add_database_arguments,
    cpu_between,
    market_server,
    postgres_cpu,
    print_environment,
    process_cpu,
    seeded_database,
    workdir,
)

SECRET = "bench-" + uuid.uuid4().hex


def _token(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "role": "buyer", "iat": now, "exp": now + 3600, "aud": "market-api", "ver": 0}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def _prepare(url: str, base: str, buyers: int, spread: int) -> list[str]:
    """Buyers, each with one item in the cart: `spread` items, round robin, with stock for all of them."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id FROM items WHERE status = 'active' AND currency = 'EUR' ORDER BY created_at DESC LIMIT $1",
            spread,
        )
        items = [str(row["id"]) for row in rows]
        await connection.execute("UPDATE items SET stock = $1 WHERE id = ANY($2::uuid[])", buyers * 2, items)
        ids = [str(uuid.uuid4()) for _ in range(buyers)]
        await connection.executemany(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
            " VALUES ($1, $2, 'Bench buyer', 'buyer', 'not-a-hash', now())",
            [(i, f"bench-{i}@example.com") for i in ids],
        )
    finally:
        await connection.close()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        semaphore = asyncio.Semaphore(16)

        async def fill(buyer: str, item_id: str) -> None:
            async with semaphore:
                r = await client.put(
                    f"/api/v1/cart/items/{item_id}",
                    json={"quantity": 1},
                    headers={"Authorization": f"Bearer {_token(buyer)}"},
                )
                r.raise_for_status()

        await asyncio.gather(*(fill(b, items[n % len(items)]) for n, b in enumerate(ids)))
    return ids


@dataclass(frozen=True)
class Run:
    """What one client run saw: wall seconds, latency percentiles (ms), the answers' status counts."""

    elapsed_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: Counter[int]

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


async def _checkouts(base: str, buyers: list[str], concurrency: int) -> Run:
    """The checkouts from `concurrency` httpx clients in this process."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for buyer in buyers:
        queue.put_nowait(buyer)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                buyer = queue.get_nowait()
                started = time.perf_counter()
                r = await client.post(
                    "/api/v1/checkout",
                    json={"payment_method": {"type": "card", "token": "tok_visa"}},
                    headers={
                        "Authorization": f"Bearer {_token(buyer)}",
                        "Idempotency-Key": str(uuid.uuid4()),
                    },
                )
                latencies.append(time.perf_counter() - started)
                statuses[r.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = [q * 1000 for q in statistics.quantiles(latencies, n=100)]
    return Run(elapsed, quantiles[49], quantiles[94], quantiles[98], statuses)


def _checkouts_wrk(base: str, buyers: list[str], concurrency: int, cwd: Path) -> Run:
    """The checkouts from `wrk -t1 -c<concurrency>` running checkout.lua (C, with LuaJIT building each
    request): the load generator of the issue's method, far cheaper per request than httpx. Its CPU is
    counted with the clients (this process's children)."""
    tokens = cwd / f"tokens-{uuid.uuid4().hex}.txt"
    tokens.write_text("".join(_token(buyer) + "\n" for buyer in buyers))
    marker = Path(f"{tokens}.done")
    command = ["wrk", "-t1", f"-c{concurrency}", "-d600s", "-s", str(BENCH_DIR / "checkout.lua"), base]
    started = time.perf_counter()
    wrk = subprocess.Popen([*command, "--", str(tokens)], stdout=subprocess.PIPE, text=True)
    while not marker.exists() and wrk.poll() is None:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    wrk.send_signal(signal.SIGINT)  # prints its summary and the script's done()
    output, _ = wrk.communicate(timeout=30)
    statuses: Counter[int] = Counter()
    latency = [0.0, 0.0, 0.0]
    for line in output.splitlines():
        if line.startswith("status "):
            _, code, count = line.split()
            statuses[int(code)] += int(count)
        elif line.startswith("latency_us "):
            latency = [int(value) / 1000 for value in line.split()[1:]]
    tokens.unlink()
    marker.unlink(missing_ok=True)
    return Run(elapsed, *latency, statuses)


def _cpu(server_pid: int) -> tuple[float, float, float]:
    """CPU seconds so far: the server's user and system time, and this process's with its ended children's
    (the clients: httpx here or wrk; the telemetry sinks when telemetry is on)."""
    user, system = process_cpu(server_pid) or (0.0, 0.0)
    mine = os.times()
    return user, system, mine.user + mine.system + mine.children_user + mine.children_system


def _telemetry_env(mode: str) -> dict[str, str]:
    """`off`: no exporter, no Sentry. `10`/`100`: spans and metrics over OTLP/HTTP to a local sink and Sentry
    to another (telemetry_cost.py's sinks), with 10 % (parent-based trace-id ratio) or 100 % head sampling."""
    if mode == "off":
        return {}
    from telemetry_cost import _start_sink

    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_start_sink()}",
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{_start_sink()}/1",
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    }
    if mode == "10":
        env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.add_argument("--buyers", type=int, default=1000, help="checkouts per run (one per buyer)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--items-bought",
        type=int,
        default=1,
        help="how many items the buyers share, round robin (default %(default)s: every checkout takes the"
        " same item's row lock, a flash sale)",
    )
    parser.add_argument(
        "--telemetry",
        choices=("off", "10", "100"),
        default="10",
        help="off, or OTLP + Sentry to local sinks at 10 %% or 100 %% head sampling (default: %(default)s)",
    )
    parser.add_argument(
        "--client",
        choices=("httpx", "wrk"),
        default="httpx",
        help="the load generator: httpx coroutines in this process, or wrk running checkout.lua"
        " (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default: %(default)s)")
    parser.add_argument(
        "--before-src",
        default=None,
        help="also run another checkout's `src` folder (PYTHONPATH), interleaved round by round",
    )
    parser.set_defaults(items=1000, sellers=10)
    args = parser.parse_args()
    print_environment()
    telemetry = _telemetry_env(args.telemetry)
    print(f"telemetry: {args.telemetry}; items bought: {args.items_bought}")
    builds: dict[str, dict[str, str]] = {"market": {}}
    if args.before_src:
        builds["before"] = {"PYTHONPATH": args.before_src}
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in builds}
    with workdir() as cwd, seeded_database(args, cwd) as url:
        for round_no in range(args.rounds):
            order = list(builds) if round_no % 2 == 0 else list(reversed(builds))
            for name in order:
                # All the checkouts come from one address: the per-address checkout limit would answer most
                # with 429.
                server = market_server(
                    name,
                    url,
                    cwd,
                    MARKET_SECRET_KEY=SECRET,
                    MARKET_RECONCILE_INTERVAL="3600",
                    MARKET_RATE_LIMITS="false",
                    **telemetry,
                    **builds[name],
                )
                server.start()
                try:
                    buyers = asyncio.run(_prepare(url, server.base_url, args.buyers, args.items_bought))
                    assert server.process is not None
                    before, pg_before = _cpu(server.process.pid), asyncio.run(postgres_cpu(url))
                    if args.client == "wrk":
                        run = _checkouts_wrk(server.base_url, buyers, args.concurrency, cwd)
                    else:
                        run = asyncio.run(_checkouts(server.base_url, buyers, args.concurrency))
                    after, pg_after = _cpu(server.process.pid), asyncio.run(postgres_cpu(url))
                finally:
                    server.stop()
                paid, elapsed = run.statuses.get(201, 0), run.elapsed_s
                user, system, clients = (
                    (b - a) / run.count * 1e3 for a, b in zip(before, after, strict=True)
                )
                postgres = cpu_between(pg_before, pg_after) / run.count * 1e3
                results[name].append(
                    (
                        paid / elapsed,
                        run.p50_ms,
                        run.p95_ms,
                        user + system,
                        clients,
                        postgres,
                    )
                )
                print(
                    f"round {round_no + 1} {name:<7} {run.count} checkouts from {args.concurrency} {args.client} clients"
                    f" in {elapsed:.1f} s, outcomes {dict(sorted(run.statuses.items()))}:"
                    f" {paid / elapsed:.0f} paid orders/s, p50 {run.p50_ms:.1f} ms,"
                    f" p95 {run.p95_ms:.1f} ms, p99 {run.p99_ms:.1f} ms;"
                    f" CPU per checkout: server {user + system:.2f} ms (user {user:.2f}, system {system:.2f}),"
                    f" clients {clients:.2f} ms, PostgreSQL {postgres:.2f} ms;"
                    f" wall {elapsed / run.count * 1e3:.2f} ms per checkout on {os.cpu_count()} cores",
                    flush=True,
                )
    print("medians over rounds:")
    for name, rows in results.items():
        rate, p50, p95, server, clients, postgres = (
            statistics.median(column) for column in zip(*rows, strict=True)
        )
        total = server + clients + postgres
        print(
            f"  {name:<7} {rate:.0f} paid orders/s (one worker), p50 {p50:.1f} ms, p95 {p95:.1f} ms;"
            f" CPU per checkout: server {server:.2f} ms, clients {clients:.2f} ms, PostgreSQL {postgres:.2f} ms,"
            f" together {total:.2f} ms: {os.cpu_count()} cores busy with nothing else would top out at"
            f" {(os.cpu_count() or 1) / total * 1e3:.0f} checkouts/s"
        )


if __name__ == "__main__":
    main()
