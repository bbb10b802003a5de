"""What one buyer's checkout costs in CPU instructions and SQL statements, which other load on the machine does
not change (unlike orders/s on a shared machine): a flow is `PUT /api/v1/cart/items/{id}` (quantity 1) then
`POST /api/v1/checkout` with `tok_visa` (idempotency claim, cart claim, order + stock reservation, the sandbox
charge, settling the payment, emptying the cart, completing the key), served in process through the whole ASGI
app on PostgreSQL, counted by valgrind (cachegrind, no cache simulation). Each flow is a buyer of its own
(inserted straight into the database beforehand, as checkout_throughput.py does) with a token of its own.

Each count is one process: start, warm up, run N flows (8 buyers at a time, each client on an item of its own:
no row lock waits), exit. Two values of N; the difference divided by the difference in N is the cost per flow,
without start-up and shutdown. Statements are what reaches the Piccolo engine (`run_querystring`: the query
builder's, and written SQL on SQLite) or asyncpg straight from `Database.fetch` (written SQL on PostgreSQL, since
fa74441); BEGIN and COMMIT are not among them. Per flow, split into the cart add and the checkout. Background loops are slowed to once an hour (their cost is per second of wall time).

`--telemetry 10`: OTLP spans and metrics at 10 % head sampling plus Sentry, to local sinks (the issue 16
target's setting); default off. `--src NAME=DIR` counts another version's `src` too (e.g. `git worktree add
/tmp/before main`, then `--src main=/tmp/before/src`), on the same database. Nothing is asserted.

    .venv/bin/python benchmarks/checkout_instructions.py [--flows 40 200] [--telemetry off|10] [--src NAME=DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from _harness import (
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

CONCURRENCY = 8
WARM_UP = 2  # flows per client before the count's own
SECRET = "bench-" + uuid.uuid4().hex
PAYMENT = json.dumps({"payment_method": {"type": "card", "token": "tok_visa"}}).encode()


def _token(user_id: str, secret: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "role": "buyer", "iat": now, "exp": now + 3600, "aud": "market-api", "ver": 0}
    return jwt.encode(claims, secret, algorithm="HS256")


async def _buyers(url: str, count: int) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        await connection.executemany(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
            " VALUES ($1, $2, 'Bench buyer', 'buyer', 'not-a-hash', now())",
            [(i, f"bench-{i}@example.com") for i in ids],
        )
    finally:
        await connection.close()
    return ids


async def _items(url: str) -> list[str]:
    """CONCURRENCY active items in EUR, with stock for every flow of every run."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id FROM items WHERE status = 'active' AND currency = 'EUR' ORDER BY id LIMIT $1",
            CONCURRENCY,
        )
        await connection.execute(
            "UPDATE items SET stock = 1000000 WHERE id = ANY($1)", [r["id"] for r in rows]
        )
    finally:
        await connection.close()
    return [str(r["id"]) for r in rows]


class _StatementCounter:
    """Counts what reaches the engine's `run_querystring` or, for written SQL on PostgreSQL, asyncpg through
    `Database._fetch_postgres`, by phase of the flow. The phase is a context variable: each client is a task of
    its own, so interleaved flows count under their own phase."""

    def __init__(self) -> None:
        self.phase: contextvars.ContextVar[str | None] = contextvars.ContextVar("phase", default=None)
        self.counts = {"cart": 0, "checkout": 0}

    def install(self) -> None:
        from market.adapters.db.database import Database

        original = Database.start
        counter = self

        def counting(run: Any) -> Any:
            async def counted(*args: object, **kwargs: object) -> object:
                phase = counter.phase.get()
                if phase is not None:
                    counter.counts[phase] += 1
                return await run(*args, **kwargs)

            return counted

        async def start(db: Database) -> None:
            await original(db)
            db.engine.run_querystring = counting(db.engine.run_querystring)  # type: ignore[method-assign]
            if hasattr(db, "_fetch_postgres"):  # versions since fa74441
                db._fetch_postgres = counting(db._fetch_postgres)  # type: ignore[method-assign]

        Database.start = start  # type: ignore[method-assign]


async def serve(flows: int, buyers: list[str], items: list[str], secret: str) -> dict[str, int]:
    from market.bootstrap import build_app

    quiet_background_work()
    statements = _StatementCounter()
    statements.install()
    app = build_app(auto_migrate=False)
    production_gc()

    async def call(method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        return await request(app, method, path, body=body, headers=headers)

    async def flow(buyer: str, item: str, counted: bool) -> None:
        auth = (b"authorization", b"Bearer " + _token(buyer, secret).encode())
        statements.phase.set("cart" if counted else None)
        status = await call("PUT", f"/api/v1/cart/items/{item}", b'{"quantity":1}', [auth])
        if status != 200:
            raise RuntimeError(f"PUT cart answered {status}")
        statements.phase.set("checkout" if counted else None)
        key = (b"idempotency-key", str(uuid.uuid4()).encode())
        status = await call("POST", "/api/v1/checkout", PAYMENT, [auth, key])
        if status != 201:
            raise RuntimeError(f"POST /checkout answered {status}")

    async def client(index: int, mine: list[str], counted: bool) -> None:
        for buyer in mine:
            await flow(buyer, items[index], counted)

    per_client = flows // CONCURRENCY
    warm, rest = buyers[: WARM_UP * CONCURRENCY], buyers[WARM_UP * CONCURRENCY :]
    async with running(app):
        await asyncio.gather(
            *(client(i, warm[i * WARM_UP : (i + 1) * WARM_UP], False) for i in range(CONCURRENCY))
        )
        await asyncio.gather(
            *(client(i, rest[i * per_client : (i + 1) * per_client], True) for i in range(CONCURRENCY))
        )
    return statements.counts


def count(
    url: str, cwd: Path, flows: int, items: list[str], src: str | None, telemetry: dict[str, str]
) -> tuple[int, dict[str, int]]:
    buyers = asyncio.run(_buyers(url, flows + WARM_UP * CONCURRENCY))
    spec = cwd / f"flows-{uuid.uuid4().hex[:8]}.json"
    spec.write_text(json.dumps({"flows": flows, "buyers": buyers, "items": items, "secret": SECRET}))
    env = market_env(url, cwd / "var", **IN_PROCESS_ENV, MARKET_SECRET_KEY=SECRET, **telemetry)
    if src:
        env["PYTHONPATH"] = src
    instructions, out = valgrind_instructions([sys.executable, __file__, "--child", str(spec)], env, cwd)
    return instructions, json.loads(out.strip().splitlines()[-1])


def _telemetry_env(mode: str) -> dict[str, str]:
    if mode == "off":
        return {}
    from telemetry_cost import _start_sink

    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_start_sink()}",
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{_start_sink()}/1",
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        import uvloop

        spec = json.loads(Path(sys.argv[2]).read_text())
        counts = uvloop.run(serve(spec["flows"], spec["buyers"], spec["items"], spec["secret"]))
        print(json.dumps(counts))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.set_defaults(items=2_000, sellers=10)
    parser.add_argument("--flows", type=int, nargs=2, default=[40, 200], metavar=("FEW", "MANY"))
    parser.add_argument("--telemetry", choices=("off", "10"), default="off")
    parser.add_argument(
        "--src", action="append", default=[], metavar="NAME=DIR", help="another version's src"
    )
    parser.add_argument("--no-this", action="store_true", help="count only the --src versions")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (Debian: apt-get install -y valgrind)")
    few, many = (n - n % CONCURRENCY for n in args.flows)
    telemetry = _telemetry_env(args.telemetry)
    versions = [] if args.no_this else [("this", None)]
    versions += [(name, src) for name, _, src in (spec.partition("=") for spec in args.src)]
    print(
        f"cart add + checkout (tok_visa), in process on PostgreSQL, {CONCURRENCY} buyers at a time;"
        f" {few} and {many} flows; telemetry {args.telemetry}"
    )
    with workdir() as cwd, seeded_database(args, cwd, prefix="market_bench_checkout") as url:
        items = asyncio.run(_items(url))
        for name, src in versions:
            # Byte-compiled beforehand: compiling inside one count but not the other would skew the difference.
            folder = src or str(Path(__file__).resolve().parent.parent / "src")
            subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=True)
            (low, low_sql), (high, high_sql) = (
                count(url, cwd, n, items, src, telemetry) for n in (few, many)
            )
            per_flow = (high - low) / (many - few)
            sql = {phase: (high_sql[phase] - low_sql[phase]) / (many - few) for phase in high_sql}
            print(
                f"  {name:<8}: {low:,} and {high:,} instructions: {per_flow:,.0f} per flow;"
                f" statements per flow {sum(sql.values()):.2f}"
                f" (cart add {sql['cart']:.2f}, checkout {sql['checkout']:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
