"""Checkout throughput on PostgreSQL, one uvicorn worker: orders per second through the whole path
(idempotency claim, cart claim, order + stock reservation in one transaction, the sandbox charge, settling
the payment, emptying the cart) — `POST /api/v1/checkout` with `tok_visa`.

Seeds a fresh database (`market db seed`), inserts `--buyers` buyer accounts straight into the database
(hashing 1 000 passwords through the API would measure argon2, not checkout), signs their tokens with the
server's MARKET_SECRET_KEY, fills each cart over HTTP, then fires the checkouts from `--concurrency` parallel
clients in this process. Prints orders/s, p50/p95/p99 latency, the server's CPU per checkout and the
outcome counts. Nothing is asserted.

Telemetry is on by default as the target states it (`--telemetry 10`): OTLP/HTTP spans and metrics at 10 %
head sampling and Sentry, to local sinks in this process (telemetry_cost.py's); `--telemetry off` or `100`.
`--before-src DIR` runs another checkout's `src` (e.g. `git archive main src | tar -x -C /tmp/before`) on the
same database, interleaved round by round (`--rounds`), each run with its own fresh buyers.

    .venv/bin/python benchmarks/checkout_throughput.py [--buyers 1000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections import Counter

import asyncpg
import httpx
import jwt
from _harness import add_database_arguments, market_server, print_environment, seeded_database, workdir

SECRET = "bench-" + uuid.uuid4().hex


def _token(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "role": "buyer", "iat": now, "exp": now + 3600, "aud": "market-api", "ver": 0}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def _prepare(url: str, base: str, buyers: int) -> tuple[list[str], str]:
    """Buyers (id, token) and an item with stock for all of them."""
    connection = await asyncpg.connect(url)
    try:
        item = await connection.fetchrow(
            "SELECT id FROM items WHERE status = 'active' AND currency = 'EUR' ORDER BY created_at DESC LIMIT 1"
        )
        await connection.execute("UPDATE items SET stock = $1 WHERE id = $2", buyers * 2, item["id"])
        ids = [str(uuid.uuid4()) for _ in range(buyers)]
        await connection.executemany(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
            " VALUES ($1, $2, 'Bench buyer', 'buyer', 'not-a-hash', now())",
            [(i, f"bench-{i}@example.com") for i in ids],
        )
    finally:
        await connection.close()
    item_id = str(item["id"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        semaphore = asyncio.Semaphore(16)

        async def fill(buyer: str) -> None:
            async with semaphore:
                r = await client.put(
                    f"/api/v1/cart/items/{item_id}",
                    json={"quantity": 1},
                    headers={"Authorization": f"Bearer {_token(buyer)}"},
                )
                r.raise_for_status()

        await asyncio.gather(*(fill(b) for b in ids))
    return ids, item_id


async def _checkouts(
    base: str, buyers: list[str], concurrency: int
) -> tuple[float, list[float], Counter[int]]:
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
        return time.perf_counter() - started, latencies, statuses


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
        "--telemetry",
        choices=("off", "10", "100"),
        default="10",
        help="off, or OTLP + Sentry to local sinks at 10 %% or 100 %% head sampling (default: %(default)s)",
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
    print(f"telemetry: {args.telemetry}")
    builds: dict[str, dict[str, str]] = {"market": {}}
    if args.before_src:
        builds["before"] = {"PYTHONPATH": args.before_src}
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in builds}
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
                    buyers, _ = asyncio.run(_prepare(url, server.base_url, args.buyers))
                    before = server.cpu_seconds()
                    elapsed, latencies, statuses = asyncio.run(
                        _checkouts(server.base_url, buyers, args.concurrency)
                    )
                    after = server.cpu_seconds()
                finally:
                    server.stop()
                quantiles = statistics.quantiles(latencies, n=100)
                paid = statuses.get(201, 0)
                cpu_ms = (
                    (after - before) / len(latencies) * 1e3
                    if before is not None and after is not None
                    else 0.0
                )
                results[name].append((paid / elapsed, quantiles[49] * 1000, quantiles[94] * 1000, cpu_ms))
                print(
                    f"round {round_no + 1} {name:<7} {len(latencies)} checkouts from {args.concurrency} clients"
                    f" in {elapsed:.1f} s, outcomes {dict(sorted(statuses.items()))}:"
                    f" {paid / elapsed:.0f} paid orders/s, p50 {quantiles[49] * 1000:.1f} ms,"
                    f" p95 {quantiles[94] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms,"
                    f" server CPU {cpu_ms:.2f} ms per checkout",
                    flush=True,
                )
    print("medians over rounds:")
    for name, rows in results.items():
        rate, p50, p95, cpu = (statistics.median(column) for column in zip(*rows, strict=True))
        print(
            f"  {name:<7} {rate:.0f} paid orders/s (one worker), p50 {p50:.1f} ms, p95 {p95:.1f} ms,"
            f" server CPU {cpu:.2f} ms per checkout"
        )


if __name__ == "__main__":
    main()
