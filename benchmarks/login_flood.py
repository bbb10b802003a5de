"""Legitimate sign-in latency, idle and during a flood of bad sign-ins (issue 11, finding 5: 40 concurrent bad
logins made a real login take 3.9 s). One `market serve` worker on a fresh SQLite file per scenario.

Each scenario measures `--logins` real sign-ins (right password) one after the other while idle, then again
while `--flood` clients each send bad sign-ins back to back. The real sign-ins come from their own loopback
addresses (127.0.1.N), the flood from 127.0.0.2 (one address) or from one address per flood client
(`distributed`). Prints p50/p95/max and the ratio to idle, and what the flood got back. Nothing is asserted.

    .venv/bin/python benchmarks/login_flood.py [--flood 40] [--logins 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections import Counter

import httpx
from _harness import market_server, print_environment, workdir

TOKEN = "/api/v1/auth/token"
PASSWORD = "correct horse battery staple"

SCENARIOS: dict[str, tuple[dict[str, str], bool]] = {
    # name: (environment, flood from one address per client)
    "limits on (defaults), flood from one address": ({}, False),
    "limits on (defaults), flood from 40 addresses": ({}, True),
    "limits off, hashing cap only": ({"MARKET_RATE_LIMITS": "off"}, False),
    "limits off, cap 32 and 30 s wait (as before)": (
        {
            "MARKET_RATE_LIMITS": "off",
            "MARKET_PASSWORD_HASH_CONCURRENCY": "32",
            "MARKET_PASSWORD_HASH_WAIT_MS": "30000",
        },
        False,
    ),
}


async def _sign_in(base: str, address: str, email: str, password: str) -> tuple[float, int]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=60) as client:
        started = time.perf_counter()
        r = await client.post(TOKEN, json={"email": email, "password": password})
        return time.perf_counter() - started, r.status_code


async def _real_logins(base: str, email: str, count: int, first_address: int) -> list[float]:
    seconds = []
    for n in range(count):
        elapsed, status = await _sign_in(base, f"127.0.1.{first_address + n}", email, PASSWORD)
        if status != 200:
            print(f"    real sign-in answered {status}")
        seconds.append(elapsed)
    return seconds


async def _flood(base: str, clients: int, distributed: bool, stop: asyncio.Event, outcomes: Counter) -> None:
    async def one(n: int) -> None:
        address = f"127.0.2.{n + 1}" if distributed else "127.0.0.2"
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(base_url=base, transport=transport, timeout=60) as client:
            while not stop.is_set():
                email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
                r = await client.post(TOKEN, json={"email": email, "password": "wrong guess"})
                outcomes[r.status_code] += 1

    await asyncio.gather(*(one(n) for n in range(clients)))


def _figures(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:6.0f} ms  p95 {p95 * 1000:6.0f} ms  max {ordered[-1] * 1000:6.0f} ms"


async def _scenario(base: str, flood: int, logins: int, distributed: bool) -> None:
    email = f"real-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        body = {"email": email, "password": PASSWORD, "display_name": "Real", "role": "buyer"}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    await _real_logins(base, email, 2, 200)  # warm-up
    idle = await _real_logins(base, email, logins, 1)
    stop, outcomes = asyncio.Event(), Counter()
    flooding = asyncio.create_task(_flood(base, flood, distributed, stop, outcomes))
    await asyncio.sleep(1.0)  # let the flood build up first
    during = await _real_logins(base, email, logins, 100)
    stop.set()
    await flooding
    ratio = statistics.median(during) / statistics.median(idle)
    print(f"  idle:         {_figures(idle)}")
    print(f"  during flood: {_figures(during)}   (p50 {ratio:.1f}x idle)")
    print(f"  flood answers: {dict(sorted(outcomes.items()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=40, help="concurrent bad sign-in clients")
    parser.add_argument("--logins", type=int, default=15, help="real sign-ins measured per phase")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    print_environment()
    for name, (env, distributed) in SCENARIOS.items():
        if args.only not in name:
            continue
        print(f"{name}:")
        with workdir() as cwd:
            server = market_server(
                "login", f"sqlite:///{cwd / 'market.db'}", cwd, MARKET_LOG_LEVEL="WARNING", **env
            )
            server.start()
            try:
                asyncio.run(_scenario(server.base_url, args.flood, args.logins, distributed))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
