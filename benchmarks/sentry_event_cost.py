"""What one Sentry error event costs with and without local variables: the service's own `init_sentry` options
(scrubbers included), reporting to a local sink, for an exception raised four frames deep under a request
handler that holds the service's `Ports` (as the test-monitoring and register 500s do). Prints the CPU time
of `report_exception` in the calling thread (capture, scrubbing, serialisation; compression and the send happen
on Sentry's thread) and the size of the envelope that reached the sink, as sent (compressed). Each variant runs in its own process (Sentry is set up once per process).
Nothing is asserted.

    .venv/bin/python benchmarks/sentry_event_cost.py [--events 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SIZES: list[int] = []


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        SIZES.append(len(body))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _variant(locals_on: bool, events: int) -> None:
    import sentry_sdk

    from market.adapters.db.database import Database
    from market.bootstrap import build_ports
    from market.config import SentrySettings, Settings
    from market.telemetry import sentry

    if locals_on:  # what the service did before: the same options but with local variables
        init = sentry_sdk.init
        sentry_sdk.init = lambda **kw: init(**{**kw, "include_local_variables": True})  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sentry.init_sentry(SentrySettings(dsn=f"http://public@127.0.0.1:{server.server_address[1]}/1"))
    var = Path(tempfile.mkdtemp(prefix="bench-sentry-"))
    settings = Settings.from_env(
        {"MARKET_DATABASE_URL": f"sqlite:///{var}/m.db", "MARKET_VAR_DIR": str(var)}, dotenv=None
    )
    services = build_ports(settings, Database(settings.database))  # never started: no query is made

    def deep(depth: int, payload: dict[str, Any]) -> None:
        if depth == 0:
            raise RuntimeError("database is locked")
        deep(depth - 1, payload)

    def handler(services: Any) -> str | None:
        body = {"email": "ada@example.com", "password": "correct horse battery", "role": "buyer"}
        try:
            deep(4, body)
        except RuntimeError as exc:
            return sentry.report_exception(exc, route="/api/v1/auth/register", method="POST")
        return None

    cpu = []
    for _ in range(events):
        started = time.thread_time()
        handler(services)
        cpu.append((time.thread_time() - started) * 1e6)
    sentry_sdk.get_client().flush(timeout=10)
    label = "with local variables" if locals_on else "without local variables (now)"
    print(
        f"{label:32} report_exception CPU (calling thread) p50 {statistics.median(cpu):7.0f} µs, "
        f"p95 {statistics.quantiles(cpu, n=20)[-1]:7.0f} µs; envelope {statistics.median(SIZES):5.0f} bytes sent "
        f"({len(SIZES)}/{events} arrived)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--variant", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        _variant(args.variant == "on", args.events)
        return
    for variant in ("on", "off"):
        subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--events", str(args.events)], check=True
        )


if __name__ == "__main__":
    main()
