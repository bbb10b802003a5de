"""Session recording's cost in CPU instructions, which other load on the machine does not change (unlike req/s
and CPU time on a shared machine): `GET /api/v1/items?limit=20` with an `X-Session-Id` header, served in
process through the whole ASGI app (edge middleware, Litestar, PostgreSQL through the pool, telemetry
exporters off), recording on and off, counted by valgrind (`cachegrind`, no cache simulation).

Each count is one process: start, warm up, serve N requests (8 at a time), write what was recorded, exit. Two
values of N per setting; the difference divided by the difference in N is the instructions per request,
without the start-up. Instructions are not time (a cache miss costs more than an add), but this path is the
same code either way, so the ratio on/off estimates the CPU ratio. Nothing is asserted.

    .venv/bin/python benchmarks/session_recording_instructions.py [--requests 200 1000]   # ~10 min under valgrind
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path

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

SESSION = b"bench-session-0123456789abcdef"
CONCURRENCY = 8


async def serve(requests: int, recording: bool) -> None:
    from market.bootstrap import build_app

    quiet_background_work()  # the recorder's writer is counted
    app = build_app(auto_migrate=True)
    production_gc()
    async with running(app):
        edge = app.asgi_handler
        recorder = edge.sessions
        if recorder is not None:
            # Batches as at production rates: the writer's second is a few requests under valgrind, and a batch
            # of a few entries costs its transaction's round trips per entry. Written when full, or at the end.
            recorder.buffer._interval_s = HOUR_S
            recorder.buffer._wake.set()  # the writer takes the new interval on its next turn
        if not recording:
            edge.sessions = None

        async def client(n: int) -> None:
            for _ in range(n):
                status = await request(
                    app, "GET", "/api/v1/items", b"limit=20", headers=[(b"x-session-id", SESSION)]
                )
                if status != 200:
                    raise RuntimeError(f"GET /api/v1/items answered {status}")

        await asyncio.gather(*(client(20 // CONCURRENCY + 1) for _ in range(CONCURRENCY)))  # warm-up
        await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        if recording and recorder is not None:
            await recorder.flush()  # what was recorded is written inside the count


def count(python: str, url: str, cwd: Path, requests: int, recording: bool) -> int:
    env = market_env(url, cwd / "var", **IN_PROCESS_ENV)
    command = [python, __file__, "--child", str(requests), "on" if recording else "off"]
    return valgrind_instructions(command, env, cwd)[0]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        import uvloop

        uvloop.run(serve(int(sys.argv[2]), sys.argv[3] == "on"))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=20_000, sellers=20)
    parser.add_argument("--requests", type=int, nargs=2, default=[200, 1000], metavar=("FEW", "MANY"))
    parser.add_argument("--only", choices=["on", "off"], help="count one setting only (e.g. another build's)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (Debian: apt-get install -y valgrind)")
    few, many = args.requests
    print(
        f"GET /api/v1/items?limit=20 with X-Session-Id, in process, {CONCURRENCY} at a time; {few} and {many} requests"
    )
    with workdir() as cwd, seeded_database(args, cwd) as url:
        per_request = {}
        for recording in (True, False) if args.only is None else (args.only == "on",):
            low, high = (count(sys.executable, url, cwd, n, recording) for n in (few, many))
            per_request[recording] = (high - low) / (many - few)
            print(
                f"  recording {'on ' if recording else 'off'}: {low:,} and {high:,} instructions:"
                f" {per_request[recording]:,.0f} per request"
            )
    if args.only is not None:
        return
    on, off = per_request[True], per_request[False]
    print(
        f"recording costs {on - off:+,.0f} instructions per request ({(on - off) / off:+.1%}); ratio off/on {off / on:.3f}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
