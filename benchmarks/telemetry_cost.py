"""What telemetry costs on `GET /api/v1/items?limit=20` (PostgreSQL, one uvicorn worker), interleaved in one
run with browse_vs_floor.py's machinery:

- `market`: telemetry off (no OTLP endpoint, no Sentry: spans are not recorded, metrics still are);
- `full 100%`: spans and metrics exported over OTLP/HTTP to a local receiver, Sentry on (a local receiver),
  parent-based always-on sampling;
- `full 10%`: the same with 10 % head sampling (`parentbased_traceidratio`, 0.1);
- `collector down`: 100 % sampling, exporting to a port nobody listens on, Sentry on.

The receivers are minimal sinks in this process (they answer 200 and keep nothing). Prints req/s, p50, p99,
server CPU per request and ratios to `market` (targets: >= 0.60x at 100 %, >= 0.90x at 10 %, collector down
no worse than up). Nothing is asserted.

    .venv/bin/python benchmarks/telemetry_cost.py [--duration 10] [--rounds 3]

Side by side with another version of the code (`--before-src DIR`, a `src` folder, e.g. from
`git archive main src | tar -x -C /tmp/before`): adds `before 100%`, the same 100 % setup run from DIR, so the
cost of a change to the telemetry is `full 100%` / `before 100%` in one interleaved run (and `before 10%` and
`before down`, unless `--only-full`).
`--only-full` leaves out the 10 % and collector-down variants.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import browse_vs_floor


class _Sink(BaseHTTPRequestHandler):
    """Reads the body and answers 200 with an empty body (a valid empty OTLP response, and fine for Sentry)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", self.headers.get("content-type") or "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


def _start_sink() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    collector, sentry, nobody = _start_sink(), _start_sink(), _unused_port()
    dsn = f"http://publickey@127.0.0.1:{sentry}/1"
    common = f"SENTRY_DSN={dsn},OTEL_BSP_SCHEDULE_DELAY=1000,OTEL_METRIC_EXPORT_INTERVAL=5000"
    variants = [
        f"full 100%:OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{collector},{common}",
        f"full 10%:OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{collector},{common},"
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio,OTEL_TRACES_SAMPLER_ARG=0.1",
        f"collector down:OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{nobody},{common}",
    ]
    argv = sys.argv[1:]
    if "--only-full" in argv:
        argv.remove("--only-full")
        variants = variants[:1]
    if "--before-src" in argv:
        at = argv.index("--before-src")
        before = argv[at + 1]
        del argv[at : at + 2]
        variants.append(
            f"before 100%:PYTHONPATH={before},OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{collector},{common}"
        )
        if len(variants) > 2:  # not --only-full
            variants.append(f"before 10%:PYTHONPATH={before},{variants[1].partition(':')[2]}")
            variants.append(f"before down:PYTHONPATH={before},{variants[2].partition(':')[2]}")
    sys.argv = [sys.argv[0], *argv, "--baseline", "market"]
    for variant in variants:
        sys.argv += ["--variant", variant]
    browse_vs_floor.main()


if __name__ == "__main__":
    main()
