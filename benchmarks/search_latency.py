"""Latency of full-text search, `GET /api/v1/items?q=<words>`, through `market serve` (one worker, telemetry
off) on a fresh PostgreSQL database seeded with `market db seed` (100 000 items by default). Requests are
sequential over one keep-alive connection from this process; the server is another process. Prints p50,
p95 and max per query, and how many items each query matches. Nothing is asserted.

    .venv/bin/python benchmarks/search_latency.py [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import time
import urllib.parse

import asyncpg
from _harness import add_database_arguments, market_server, print_environment, seeded_database, workdir

# What buyers type: a thing, a thing with a colour or material, a category, a word from many descriptions,
# and one that matches nothing. The seed's vocabulary makes some of them match a quarter of the catalog.
QUERIES = [
    "mug",
    "blue mug",
    "ceramic teapot",
    "wooden spoon",
    "leather wallet",
    "wool scarf",
    "lamp",
    "garden",
    "kitchen",
    "handmade",
    "gift",
    "bicycle",
]


async def _match_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        sql = (
            "SELECT count(*) FROM items, plainto_tsquery('english', $1) q"  # as search.py
            " WHERE search @@ q AND status = 'active'"
        )
        return {query: await conn.fetchval(sql, query) for query in QUERIES}
    finally:
        await conn.close()


def _percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per query")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per query first")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()

    print_environment()
    with workdir() as cwd, seeded_database(args, cwd) as url:
        matches = asyncio.run(_match_counts(url))
        server = market_server("market", url, cwd)
        server.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            print(
                f"{args.requests} sequential requests per query, limit={args.limit}, one keep-alive connection"
            )
            print(f"  {'query':<18} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            all_p95 = []
            for query in QUERIES:
                path = "/api/v1/items?" + urllib.parse.urlencode({"q": query, "limit": args.limit})
                timings = []
                for n in range(args.warmup + args.requests):
                    started = time.perf_counter()
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    if response.status != 200:
                        raise RuntimeError(f"{path}: {response.status} {body[:300]!r}")
                    if n >= args.warmup:
                        timings.append(elapsed_ms)
                returned = len(json.loads(body)["items"])
                if returned != min(args.limit, matches[query]):
                    print(f"  !! {query!r}: {returned} items on the first page, {matches[query]} matches")
                timings.sort()
                p95 = _percentile(timings, 95)
                all_p95.append(p95)
                print(
                    f"  {query:<18} {matches[query]:>8} {statistics.median(timings):8.2f} {p95:8.2f}"
                    f" {timings[-1]:8.2f}"
                )
            conn.close()
            print(
                f"worst p95: {max(all_p95):.2f} ms (targets: <= 15 ms at 100 000 items, <= 40 ms at 1 000 000)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
