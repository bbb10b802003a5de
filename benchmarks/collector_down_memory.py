"""Does a server keep its memory while the OTLP collector is down? One `market serve` worker exporting spans and
metrics at 100 % to a port nobody listens on, under `wrk -t1 -c32` on `GET /api/v1/items?limit=20`, its RSS
printed after every minute of load (and, with `--before-src DIR`, a second server running the code of DIR, loaded
in turn, minute for minute). Nothing is asserted: flat is the expected shape, a slope is a leak.

    .venv/bin/python benchmarks/collector_down_memory.py [--minutes 5] [--items 10000] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

from _harness import (
    add_database_arguments,
    free_port,
    market_server,
    print_environment,
    rss_mib,
    seeded_database,
    workdir,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=10_000)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--before-src", default=None, help="a `src` folder of another version, run alongside")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args()
    print_environment()
    nobody = free_port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{nobody}", "MARKET_RATE_LIMITS": "off"}
    with workdir() as cwd, seeded_database(args, cwd) as url:
        servers = [market_server("now", url, cwd / "now", **env)]
        if args.before_src:
            servers.append(market_server("before", url, cwd / "before", PYTHONPATH=args.before_src, **env))
        for server in servers:
            server.cwd.mkdir()
            server.start()
        try:
            for minute in range(1, args.minutes + 1):
                for server in servers:
                    out = subprocess.run(
                        [args.wrk, "-t1", "-c32", "-d60s", f"{server.base_url}/api/v1/items?limit=20"],
                        capture_output=True,
                        text=True,
                        timeout=120,
                    ).stdout
                    rate = next((line.split()[1] for line in out.splitlines() if "Requests/sec" in line), "?")
                    assert server.process is not None
                    print(
                        f"minute {minute} {server.name}: {rate} req/s, RSS {rss_mib(server.process.pid):.1f} MiB"
                    )
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
