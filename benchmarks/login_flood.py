"""Legitimate sign-in latency, idle and during a flood of bad sign-ins (issue 11, finding 5: 40 concurrent bad
logins made a real login take 3.9 s; target: p50 under 2x idle, for a flood from one address and from 40).

One `market serve` worker (uvloop + httptools) on a fresh SQLite file, limits at their defaults, trusting
127.0.0.1 as its proxy so that X-Forwarded-For simulates client addresses. The flood is `wrk` (C, one thread,
`--flood` connections) running login_flood.lua: bad sign-ins, a new unknown e-mail each, from one address or
from `--addresses` addresses. The measured real sign-ins come from this light Python client, one after the
other, each from an address of its own, sending back the known-device cookie its first sign-in received (as a
browser or a cookie-keeping API client does). A few sign-ins without the cookie (a new device) show what the
shared lane gives during the flood.

Idle and flood phases alternate, round by round (the machine is shared: other load hits every phase alike);
prints each round's p50/p95 and ratio, the median of the ratios, and what the flood got back. Nothing is asserted.

    .venv/bin/python benchmarks/login_flood.py [--rounds 3] [--logins 12] [--flood 40] [--addresses 40]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter

import httpx
from _harness import BENCH_DIR, market_server, print_environment, workdir

TOKEN = "/api/v1/auth/token"
PASSWORD = "correct horse battery staple"
SCRIPT = BENCH_DIR / "login_flood.lua"


class RealUser:
    """A real account signing in from its own device (the cookie), from a new address each time."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.email = f"real-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": self.email, "password": PASSWORD, "display_name": "Real", "role": "buyer"}
        assert self.client.post("/api/v1/auth/register", json=body).status_code == 201
        self.addresses = (f"10.9.{n // 250}.{n % 250 + 1}" for n in range(1_000_000))
        self.device = ""
        self.sign_in(known=False)
        self.device = self.client.cookies.get("market_device") or ""
        self.client.cookies.clear()  # sent by hand: the cookie is Secure, the benchmark speaks plain HTTP
        assert self.device, "the first sign-in set no market_device cookie"

    def sign_in(self, known: bool = True) -> tuple[float, int]:
        headers = {"X-Forwarded-For": next(self.addresses)}
        if known:
            headers["Cookie"] = f"market_device={self.device}"
        started = time.perf_counter()
        r = self.client.post(TOKEN, json={"email": self.email, "password": PASSWORD}, headers=headers)
        return time.perf_counter() - started, r.status_code

    def measure(self, count: int) -> tuple[list[float], Counter]:
        seconds, statuses = [], Counter()
        for _ in range(count):
            elapsed, status = self.sign_in()
            statuses[status] += 1
            if status == 200:
                seconds.append(elapsed)
        return seconds, statuses


def _wrk(args: argparse.Namespace, base_url: str, addresses: int, prefix: str) -> Counter:
    command = [args.wrk, "-t1", f"-c{args.flood}", f"-d{args.flood_seconds}s", "--timeout", "10s"]
    command += ["-s", str(SCRIPT), base_url, "--", str(addresses), prefix]
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.flood_seconds + 60).stdout
    return Counter({int(code): int(n) for code, n in re.findall(r"status (\d+) (\d+)", out)})


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[round(0.95 * (len(ordered) - 1))] * 1000


def _flood_phase(
    args: argparse.Namespace, base_url: str, user: RealUser, addresses: int, prefix: str
) -> tuple[list[float], Counter, Counter, Counter]:
    answers: Counter = Counter()
    flood = threading.Thread(target=lambda: answers.update(_wrk(args, base_url, addresses, prefix)))
    flood.start()
    time.sleep(2.0)  # let the flood build up first
    seconds, statuses = user.measure(args.logins)
    new_device = Counter(user.sign_in(known=False)[1] for _ in range(args.new_device))
    flood.join()
    return seconds, statuses, new_device, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logins", type=int, default=12, help="real sign-ins measured per phase")
    parser.add_argument("--new-device", type=int, default=4, help="sign-ins without the cookie per flood")
    parser.add_argument("--flood", type=int, default=40, help="wrk connections sending bad sign-ins")
    parser.add_argument("--addresses", type=int, default=40, help="addresses of the distributed flood")
    parser.add_argument("--flood-seconds", type=int, default=10)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args()
    print_environment()
    scenarios = {"one address": (1, "10.1.0"), f"{args.addresses} addresses": (args.addresses, "10.2.0")}
    ratios: dict[str, list[float]] = {name: [] for name in scenarios}
    totals: dict[str, Counter] = {name: Counter() for name in scenarios}
    with workdir() as cwd:
        server = market_server(
            "login",
            f"sqlite:///{cwd / 'market.db'}",
            cwd,
            MARKET_LOG_LEVEL="WARNING",
            MARKET_TRUSTED_PROXIES="127.0.0.1/32",
        )
        server.start()
        try:
            user = RealUser(server.base_url)
            user.measure(3)  # warm-up
            for n in range(1, args.rounds + 1):
                for name, (addresses, prefix) in scenarios.items():
                    idle, _ = user.measure(args.logins)
                    during, statuses, new_device, answers = _flood_phase(
                        args, server.base_url, user, addresses, prefix
                    )
                    totals[name] += answers
                    (i50, i95), (f50, f95) = _percentiles(idle), _percentiles(during)
                    ratios[name].append(f50 / i50)
                    print(
                        f"round {n}, flood from {name}: idle p50 {i50:4.0f} ms p95 {i95:4.0f} ms | flood p50"
                        f" {f50:4.0f} ms p95 {f95:4.0f} ms | p50 {f50 / i50:.2f}x | known device"
                        f" {dict(statuses)}, new device {dict(new_device)} | flood got {dict(sorted(answers.items()))}"
                    )
        finally:
            server.stop()
    for name in scenarios:
        rate = sum(totals[name].values()) / (args.rounds * args.flood_seconds)
        print(
            f"flood from {name}: median p50 ratio {statistics.median(ratios[name]):.2f}x"
            f" (rounds: {', '.join(f'{r:.2f}' for r in ratios[name])}); flood answers"
            f" {dict(sorted(totals[name].items()))}, {rate:.0f} requests/s"
        )


if __name__ == "__main__":
    main()
