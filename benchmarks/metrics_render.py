"""What `GET /metrics` costs to render, and how large it is: the service's real app is built (SQLite, in this
process, no server), its request-duration histogram is given a typical mix (every GET route answered 200 three
times and 404 once), then `MetricsExposition.render()` is timed in the text
format and in OpenMetrics, many times each. Prints the body's size (bytes, lines, gzip bytes: Prometheus asks
for gzip) and the CPU per render (median of rounds, `time.process_time`); also OpenMetrics on a fresh server, before
any request.

Side by side with another version of the code (`--before-src DIR`, a `src` folder, e.g. a worktree of main):
each round runs both builds, one after the other, in fresh processes, so that the machine's load hits both.

    .venv/bin/python benchmarks/metrics_render.py [--rounds 5] [--renders 200] [--before-src /tmp/main/src]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(renders: int) -> dict[str, float]:
    """One build's figures (run in a child process whose PYTHONPATH picks the build)."""
    from market.bootstrap import build_app
    from market.config import Settings
    from market.telemetry import names

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            {"MARKET_DATABASE_URL": f"sqlite:///{tmp}/market.db", "MARKET_VAR_DIR": tmp}, dotenv=None
        )
        app = build_app(settings)
        state = app.state["metrics"]
        figures: dict[str, float] = {}
        fresh = state.render(openmetrics=True)  # a server just started: nothing requested yet
        figures["fresh_openmetrics_bytes"] = len(fresh.encode())
        started = time.process_time()
        for _ in range(renders):
            state.render(openmetrics=True)
        figures["fresh_openmetrics_ms"] = (time.process_time() - started) / renders * 1000
        routes = [(r.path_format, m) for r in app.routes for m in getattr(r, "methods", ()) if m == "GET"]
        duration = _http_duration(app)
        for route, method in routes:
            for status in (200, 200, 200, 404):
                duration.record(
                    0.003,
                    {
                        names.HTTP_REQUEST_METHOD: method,
                        names.HTTP_RESPONSE_STATUS_CODE: status,
                        names.URL_SCHEME: "http",
                        names.HTTP_ROUTE: route,
                    },
                )
        for label, openmetrics in (("text", False), ("openmetrics", True)):
            body = state.render(openmetrics=openmetrics)
            figures[f"{label}_bytes"] = len(body.encode())
            figures[f"{label}_gzip_bytes"] = len(gzip.compress(body.encode()))
            figures[f"{label}_lines"] = body.count("\n")
            started = time.process_time()
            for _ in range(renders):
                state.render(openmetrics=openmetrics)
            figures[f"{label}_ms"] = (time.process_time() - started) / renders * 1000
        return figures


def _http_duration(app: object) -> object:
    """The request-duration histogram the app's edge middleware records into."""
    handler = app.asgi_handler  # type: ignore[attr-defined]
    return handler.duration


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--before-src", type=Path, help="another build's src folder, measured side by side")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.renders)))
        return
    builds = {"after": Path(__file__).resolve().parents[1] / "src"}
    if args.before_src:
        builds = {"before": args.before_src.resolve(), **builds}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for round_ in range(args.rounds):
        for name, src in builds.items():
            env = {**os.environ, "PYTHONPATH": str(src), "MARKET_LOG_LEVEL": "ERROR"}
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--child", "--renders", str(args.renders)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            figures = json.loads(out)
            results[name].append(figures)
            print(
                f"round {round_ + 1} {name:6} text {figures['text_ms']:.2f} ms "
                f"openmetrics {figures['openmetrics_ms']:.2f} ms",
                flush=True,
            )
    print(f"load: {os.getloadavg()}")
    for name, rows in results.items():
        first = rows[0]
        print(
            f"{name:6}: text {first['text_bytes']:.0f} B ({first['text_lines']:.0f} lines, gzip "
            f"{first['text_gzip_bytes']:.0f} B), render {statistics.median(r['text_ms'] for r in rows):.2f} ms; "
            f"openmetrics {first['openmetrics_bytes']:.0f} B (gzip {first['openmetrics_gzip_bytes']:.0f} B), "
            f"render {statistics.median(r['openmetrics_ms'] for r in rows):.2f} ms; fresh server openmetrics "
            f"{first['fresh_openmetrics_bytes']:.0f} B, render {statistics.median(r['fresh_openmetrics_ms'] for r in rows):.2f} ms"
        )


if __name__ == "__main__":
    main()
