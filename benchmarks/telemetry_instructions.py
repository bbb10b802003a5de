"""Telemetry's cost in CPU instructions, which other load on the machine does not change (unlike req/s and CPU
time on a shared machine): `GET /api/v1/items?limit=20` served in process through the whole ASGI app (edge
middleware, Litestar, PostgreSQL through the pool), counted by valgrind (`cachegrind`, no cache simulation),
with `OTEL_SDK_DISABLED=true` (`disabled`, the issue's "telemetry off"), with the SDK on and no exporter (`off`:
the /metrics histograms still recorded), at 100 % sampling (`full`: spans over OTLP/HTTP to a local receiver,
Sentry on to a local receiver, metrics) and at 10 % head sampling (`tenth`), as telemetry_cost.py runs them, and
the ratios against both baselines; `--only` picks settings, and `--floor` counts floor_app.py the same way, for
the ratio market/floor.

Each count is one process: start, warm up, serve N requests (8 at a time), exit. Two values of N per setting;
the difference divided by the difference in N is the instructions per request, without start-up and shutdown.
The span exporter runs in its thread inside the count (its work is per span), exporting full batches of 512
spans as they fill and the rest at shutdown: its timer is set to an hour, since a timer-driven export takes
whatever happens to be queued, so the number of exports, and the count, varied from run to run. The periodic
OTLP metric export and the background loops (webhook polling, business gauges, the probe) are slowed to once an
hour: their cost is per second of wall time, not per request, and under valgrind a second is a few requests.

Other versions of the code side by side with `--src NAME=DIR` (a `src` folder, e.g. a `git worktree` of an
older commit: `--src 1b8aa5b=/work/wt/before-1b8/src`), run by this interpreter. Nothing is asserted.

    .venv/bin/python benchmarks/telemetry_instructions.py [--requests 200 1000] [--src NAME=DIR ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from _harness import (
    HOUR_S,
    IN_PROCESS_ENV,
    add_database_arguments,
    market_env,
    production_gc,
    quiet_background_work,
    request,
    running,
    seeded_database,
    valgrind_instructions,
    workdir,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind
from telemetry_cost import _start_sink

CONCURRENCY = 8


class SampledRequests(SpanProcessor):
    """Counts the server spans recorded: how many requests were sampled (printed with the 10 % count, whose
    figure depends on it)."""

    count = 0

    def on_end(self, span: Any) -> None:
        if span.kind is SpanKind.SERVER:
            self.count += 1


async def serve(requests: int, floor: bool = False) -> None:
    if floor:  # the bare Litestar + asyncpg app of browse_vs_floor.py (FLOOR_DATABASE_URL)
        from floor_app import create_app

        app = create_app()
    else:
        from market.bootstrap import build_app

        quiet_background_work()
        app = build_app(auto_migrate=False)
        production_gc()
    async with running(app):
        sampled = SampledRequests()
        provider = trace.get_tracer_provider()
        if hasattr(provider, "add_span_processor"):
            provider.add_span_processor(sampled)
        recorder = getattr(app.asgi_handler, "sessions", None)
        if recorder is not None:  # session recording (newer versions): batches as at production rates
            buffer = getattr(
                recorder, "buffer", recorder
            )  # its BatchBuffer (since e4c4da6), else the recorder
            if hasattr(buffer, "_interval_s"):
                buffer._interval_s = HOUR_S
            else:
                buffer._flush_interval_s = HOUR_S
            buffer._wake.set()

        async def client(n: int) -> None:
            for _ in range(n):
                status = await request(app, "GET", "/api/v1/items", b"limit=20")
                if status != 200:
                    raise RuntimeError(f"GET /api/v1/items answered {status}")

        await asyncio.gather(*(client(20 // CONCURRENCY + 1) for _ in range(CONCURRENCY)))  # warm-up
        warm = sampled.count
        await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        print(f"sampled {sampled.count - warm}")
        if recorder is not None:
            await recorder.flush()  # what was recorded is written inside the count


def count(url: str, cwd: Path, requests: int, src: str | None, telemetry: dict[str, str]) -> tuple[int, int]:
    """The instructions of one process serving `requests` requests, and how many of them were sampled."""
    env = market_env(url, cwd / "var", **IN_PROCESS_ENV, **telemetry)
    child = "--child"
    if src == FLOOR:
        env["FLOOR_DATABASE_URL"] = url
        child = "--child-floor"
    elif src:
        env["PYTHONPATH"] = src
    instructions, out = valgrind_instructions([sys.executable, __file__, child, str(requests)], env, cwd)
    match = re.search(r"^sampled (\d+)$", out, re.MULTILINE)
    return instructions, int(match[1]) if match else 0


FLOOR = "floor"
SEED = 16


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--child", "--child-floor"):
        import uvloop

        # The SDK draws trace and span ids from `random`: seeded, every run and every version draws the same
        # ids in the same order, so at 10 % the same requests are sampled and the counts compare (unseeded,
        # which ~80 of 800 requests were sampled moved the count by several thousand per request).
        random.seed(SEED)
        uvloop.run(serve(int(sys.argv[2]), floor=sys.argv[1] == "--child-floor"))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=20_000, sellers=20)
    parser.add_argument("--requests", type=int, nargs=2, default=[200, 1000], metavar=("FEW", "MANY"))
    parser.add_argument(
        "--src", action="append", default=[], metavar="NAME=DIR", help="another version's src"
    )
    parser.add_argument("--no-this", action="store_true", help="count only the --src versions")
    parser.add_argument(
        "--only", choices=["off", "full", "tenth", "disabled"], nargs="+", help="count these settings only"
    )
    parser.add_argument("--floor", action="store_true", help="count floor_app.py too (no telemetry)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (Debian: apt-get install -y valgrind)")
    few, many = args.requests
    collector, sentry = _start_sink(), _start_sink()
    settings = {
        "off": {},
        "disabled": {"OTEL_SDK_DISABLED": "true"},
        "full": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}",
            "SENTRY_DSN": f"http://publickey@127.0.0.1:{sentry}/1",
            # Spans leave in full batches of 512 (the batch processor wakes its thread when that many wait)
            # and the rest at shutdown, never on its timer: how many exports a run makes, and of what size,
            # is then the same every run, and the counts repeat.
            "OTEL_BSP_SCHEDULE_DELAY": str(int(HOUR_S * 1000)),
            "OTEL_METRIC_EXPORT_INTERVAL": str(int(HOUR_S * 1000)),
        },
    }
    # The third configuration: the same at 10 % head sampling. Which requests are sampled is decided on
    # their trace ids, drawn from the seeded `random` (SEED).
    settings["tenth"] = {
        **settings["full"],
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    versions = [] if args.no_this else [("this", None)]
    versions += [(name, src) for name, _, src in (spec.partition("=") for spec in args.src)]
    if args.floor:
        versions.append((FLOOR, FLOOR))
    print(f"GET /api/v1/items?limit=20, in process, {CONCURRENCY} at a time; {few} and {many} requests")
    with workdir() as cwd, seeded_database(args, cwd) as url:
        for name, src in versions:
            per_request = {}
            chosen = ("disabled", "off", "full", "tenth") if args.only is None else args.only
            for setting in chosen if src != FLOOR else ("off",):
                (low, sampled_low), (high, sampled_high) = (
                    count(url, cwd, n, src, settings[setting]) for n in (few, many)
                )
                per_request[setting] = (high - low) / (many - few)
                sampled = sampled_high - sampled_low
                print(
                    f"  {name:<12} telemetry {setting:<5}: {low:,} and {high:,} instructions:"
                    f" {per_request[setting]:,.0f} per request"
                    + (f" ({sampled} of the {many - few} more requests sampled)" if sampled else ""),
                    flush=True,
                )
            # The "telemetry off" is OTEL_SDK_DISABLED (`disabled`); `off` here is the SDK on without an
            # exporter (the /metrics histograms still recorded). Both baselines are printed when counted.
            for baseline in ("disabled", "off"):
                base = per_request.get(baseline)
                for setting, label, target in (("full", "100 %", 0.75), ("tenth", "10 %", 0.93)):
                    if base is None or setting not in per_request:
                        continue
                    cost = per_request[setting]
                    goal = f" (the issue's target: >= {target})" if baseline == "disabled" else ""
                    print(
                        f"  {name:<12} {label} costs {cost - base:+,.0f} per request over {baseline}"
                        f" ({(cost - base) / base:+.1%}): {baseline}/{setting} {base / cost:.3f}{goal}"
                    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
