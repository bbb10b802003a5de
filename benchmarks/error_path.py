"""What an unexpected error costs the server: `POST /api/v1/admin/test-monitoring {"kind": "error"}` (a real
unhandled exception: the 500 problem, the error log line with its traceback, the audit entry, the Sentry event)
under `wrk -t1 -c8`, one uvicorn worker each, PostgreSQL, interleaved round by round:

- `sentry up`: Sentry to a local sink (telemetry_cost.py's: answers 200, keeps nothing);
- `sentry down`: Sentry to a port nobody listens on (every event fails to send);
- `sentry off`: no SENTRY_DSN;
- `before up`, with `--before-src DIR` (another version's `src`): `sentry up` run from DIR.

Prints errors/s, p50, the server's CPU per error and its RSS after each round (a rising RSS with Sentry down
would be events or their failures kept). Nothing is asserted.

    .venv/bin/python benchmarks/error_path.py [--duration 20] [--rounds 3] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
from _harness import (
    DEFAULT_ADMIN_URL,
    Server,
    WrkRun,
    empty_database,
    free_port,
    market_env,
    market_server,
    print_environment,
    rss_mib,
    run_wrk,
    workdir,
)
from telemetry_cost import _start_sink

PATH = "/api/v1/admin/test-monitoring"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-" + secrets.token_hex(12)


def _wrk(server: Server, script: Path, args: argparse.Namespace) -> WrkRun:
    run = run_wrk(
        server, PATH, args.duration, wrk=args.wrk, connections=args.connections, extra=["-s", str(script)]
    )
    if run.errors != run.requests:  # every request should be the 500 of the error raised on purpose
        raise RuntimeError(f"{server.name}: {run.requests} requests, {run.errors} answered with an error")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url",
        default=DEFAULT_ADMIN_URL,
        help="PostgreSQL role that may create databases [MARKET_BENCH_POSTGRES_URL] (default: %(default)s)",
    )
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--before-src", default=None, help="a `src` folder of another version, run alongside")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args()
    print_environment()
    sink = _start_sink()
    common = {"MARKET_RATE_LIMITS": "off", "MARKET_SECRET_KEY": secrets.token_hex(32)}
    variants = {
        "sentry up": {"SENTRY_DSN": f"http://key@127.0.0.1:{sink}/1"},
        "sentry down": {"SENTRY_DSN": f"http://key@127.0.0.1:{free_port()}/1"},
        "sentry off": {},
    }
    if args.before_src:
        variants["before up"] = {**variants["sentry up"], "PYTHONPATH": args.before_src}
    with workdir() as cwd, empty_database(args.admin_url) as url:
        subprocess.run(
            [sys.executable, "-m", "market", "db", "migrate"], env=market_env(url, cwd / "var"), check=True
        )
        subprocess.run(
            [sys.executable, "-m", "market", "users", "create-admin", "--email", ADMIN_EMAIL],
            input=ADMIN_PASSWORD,
            text=True,
            env=market_env(url, cwd / "var"),
            check=True,
            capture_output=True,
        )
        servers = []
        for name, env in variants.items():
            server = market_server(name, url, cwd / name.replace(" ", "-"), **common, **env)
            server.cwd.mkdir()
            server.start()
            servers.append(server)
        try:
            token = httpx.post(
                servers[0].base_url + "/api/v1/auth/token",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            ).json()["access_token"]
            script = cwd / "error.lua"
            script.write_text(
                'wrk.method = "POST"\nwrk.body = \'{"kind": "error"}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            )
            runs: dict[str, list[WrkRun]] = {server.name: [] for server in servers}
            for round_ in range(1, args.rounds + 1):
                for server in servers:
                    run = _wrk(server, script, args)
                    runs[server.name].append(run)
                    assert server.process is not None
                    print(
                        f"round {round_} {server.name:<12} {run.rps:8.1f} errors/s  p50 {run.p50_ms:7.1f} ms"
                        f"  CPU {run.cpu_us_per_request or 0:7.0f} µs per error  RSS {rss_mib(server.process.pid):.1f} MiB",
                        flush=True,
                    )
            print("medians:")
            for name, measured in runs.items():
                cpu = [r.cpu_us_per_request for r in measured if r.cpu_us_per_request is not None]
                print(
                    f"  {name:<12} {statistics.median(r.rps for r in measured):8.1f} errors/s"
                    f"  CPU {statistics.median(cpu) if cpu else float('nan'):7.0f} µs per error"
                )
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
