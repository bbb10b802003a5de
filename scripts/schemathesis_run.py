"""Fuzz the live API against its own OpenAPI schema (`make schemathesis`).

Starts `market serve` on a free port with a fresh SQLite database in a temporary folder, registers a seller (whose
token every request carries) and lists one item, so that item operations meet a real id as well as made-up ones.
A buyer and an admin are made too: `scripts/schemathesis.toml` sends their tokens to the operations of those roles
(cart and checkout; admin), which a seller's token would only ever get a 403 from; and one more buyer whose token
sign-out and password change may revoke without revoking the seller's. Then it runs the schemathesis CLI with every
check and every phase (examples, coverage, fuzzing, and stateful sequences along the OpenAPI links: register ->
token, create item -> get/update/archive/add to cart, checkout -> order, ...), prints its output, stops the server
and exits with schemathesis' exit code.

The budget: SCHEMATHESIS_MAX_EXAMPLES examples per operation and phase; with SCHEMATHESIS_MAX_TIME set (seconds),
schemathesis repeats fuzzing and stateful testing until that time is spent, and stops there. A request that takes
longer than SCHEMATHESIS_REQUEST_TIMEOUT seconds is a failure: a hang fails the run.

Checks that are inapplicable to particular operations are narrowed in `scripts/schemathesis.toml`, which
explains each exception; `scripts/schemathesis_hooks.py` gives every checkout its own Idempotency-Key.
SCHEMATHESIS_SEED, SCHEMATHESIS_MAX_EXAMPLES, SCHEMATHESIS_MAX_TIME and SCHEMATHESIS_REQUEST_TIMEOUT override the
defaults below.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
HOOKS = Path(__file__).resolve().parent / "schemathesis_hooks.py"
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "42"))
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))
MAX_TIME_S = os.environ.get("SCHEMATHESIS_MAX_TIME", "")
REQUEST_TIMEOUT_S = os.environ.get("SCHEMATHESIS_REQUEST_TIMEOUT", "10")
PHASES = "examples,coverage,fuzzing,stateful"
STARTUP_TIMEOUT_S = 30
PASSWORD = "fuzzing-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(workdir: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "MARKET_DATABASE_URL": f"sqlite:///{workdir / 'market.db'}",
        "MARKET_VAR_DIR": str(workdir / "var"),
        "MARKET_PORT": str(port),
        "MARKET_LOG_LEVEL": "WARNING",
        # Fuzzing signs in and checks out far more often than any one client should.
        "MARKET_RATE_LIMITS": "off",
        "MARKET_PASSWORD_HASH_WAIT_MS": "30000",
        # Seller webhook URLs must lead to public addresses, which depends on DNS and cannot be put in a schema;
        # this documented development switch lets generated URLs (`http://0`, `http://a.b`) be set.
        "MARKET_WEBHOOKS_ALLOW_PRIVATE": "1",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("SENTRY_DSN", None)
    return env


def start_server(workdir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (workdir / "server.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "market", "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_ready(process: subprocess.Popen[bytes], base: str, workdir: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"market serve exited early:\n{(workdir / 'server.log').read_text()}")
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"market serve did not become ready:\n{(workdir / 'server.log').read_text()}")


def _token(client: httpx.Client, email: str) -> str:
    r = client.post("/auth/token", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def _account(client: httpx.Client, role: str) -> str:
    email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.com"
    r = client.post(
        "/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": f"Fuzz {role}", "role": role},
    )
    r.raise_for_status()
    return _token(client, email)


def _admin(client: httpx.Client, env: dict[str, str], workdir: Path) -> str:
    """Admins are made only by an operator: `market users create-admin`, the password on stdin."""
    email = f"fuzz-admin-{uuid.uuid4().hex[:8]}@example.com"
    subprocess.run(
        [sys.executable, "-m", "market", "users", "create-admin", "--email", email],
        input=PASSWORD + "\n",
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _token(client, email)


def seed(base: str, env: dict[str, str], workdir: Path) -> dict[str, str]:
    """A seller with one item, a buyer with it in the cart, an admin; returns their bearer tokens."""
    with httpx.Client(base_url=base + "/api/v1", timeout=30) as client:
        tokens = {"seller": _account(client, "seller"), "buyer": _account(client, "buyer")}
        tokens["account"] = _account(client, "buyer")  # for sign-out and password change, which revoke it
        tokens["admin"] = _admin(client, env, workdir)
        r = client.post(
            "/items",
            headers={"Authorization": f"Bearer {tokens['seller']}"},
            json={
                "title": "Blue mug",
                "description": "A hand-thrown stoneware mug.",
                "price_cents": 1999,
                "currency": "EUR",
                "stock": 1000,
                "category": "kitchen",
            },
        )
        r.raise_for_status()
        client.put(
            f"/cart/items/{r.json()['id']}",
            headers={"Authorization": f"Bearer {tokens['buyer']}"},
            json={"quantity": 1},
        ).raise_for_status()
    return tokens


def schemathesis_executable() -> str:
    """The CLI installed beside this interpreter (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        raise SystemExit("schemathesis is not installed: pip install -e '.[test]'")
    return found


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="market-schemathesis-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(workdir, port)
    process = start_server(workdir, port, env)
    try:
        wait_ready(process, base, workdir)
        tokens = seed(base, env, workdir)
        command = [
            schemathesis_executable(),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base}/schema/openapi.json",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--phases",
            PHASES,
            "--max-examples",
            str(MAX_EXAMPLES),
            *(["--max-time", MAX_TIME_S] if MAX_TIME_S else []),
            "--request-timeout",
            REQUEST_TIMEOUT_S,
            "--header",
            f"Authorization: Bearer {tokens['seller']}",
            "--workers",
            "1",
            "--no-color",
            *sys.argv[1:],  # e.g. --include-operation-id addSessionEvents: one operation, while working on it
        ]
        shown = [
            "'Authorization: Bearer ***'" if part.startswith("Authorization:") else part for part in command
        ]
        print("$", " ".join(shown), flush=True)
        fuzz_env = {
            **os.environ,
            "MARKET_FUZZ_BUYER_TOKEN": tokens["buyer"],
            "MARKET_FUZZ_ADMIN_TOKEN": tokens["admin"],
            "MARKET_FUZZ_ACCOUNT_TOKEN": tokens["account"],
            "SCHEMATHESIS_HOOKS": str(HOOKS),
        }
        # Run in the temporary folder: report files, if any, land there and go with it.
        return subprocess.run(command, cwd=workdir, env=fuzz_env, check=False).returncode
    finally:
        stop(process)
        if process.returncode not in (0, -signal.SIGTERM):
            print(f"market serve exited with {process.returncode}; its log:", file=sys.stderr)
            print((workdir / "server.log").read_text(), file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
