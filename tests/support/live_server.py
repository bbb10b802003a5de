"""`market serve` in a subprocess on a fresh database, and the accounts the end-to-end tests sign in with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.postgres import admin_execute, postgres_url


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A running `market serve`: its URL, engine, process, log file and environment."""

    def __init__(
        self,
        base_url: str,
        engine: str,
        process: subprocess.Popen[bytes],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.engine = engine
        self.process = process
        self.log = log
        self.env = env or {}
        """The server's environment: run `market` commands against the same database and var folder."""

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client on this server."""
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)  # type: ignore[arg-type]


def start_server(
    database_url: str,
    workdir: Path,
    engine: str,
    extra_env: dict[str, str] | None = None,
    serve_args: tuple[str, ...] = (),
    ready_timeout_s: float = 30,
    stderr_log: Path | None = None,
) -> LiveServer:
    """`market serve` (plus `serve_args`, e.g. `--workers 2`), ready. Rate limits are off unless `extra_env`
    turns them on: suites sign in and check out far more often than any one client should (and with them off,
    registrations in parallel queue for a password-hashing slot instead of being refused)."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    env = {
        **os.environ,
        "MARKET_DATABASE_URL": database_url,
        "MARKET_VAR_DIR": str(workdir / "var"),
        "MARKET_PORT": str(port),
        "MARKET_RATE_LIMITS": "off",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # the developer's collector; a test may name its own
    env.update(extra_env or {})
    with log.open("wb") as out, (stderr_log or log).open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "market", "serve", "--port", str(port), *serve_args],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=err if stderr_log is not None else subprocess.STDOUT,  # apart: stdout must be JSON only
        )
    # Reached on the address it binds (MARKET_HOST): loopback for an unspecified one, an IPv6 one in brackets.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(env.get("MARKET_HOST", ""), env.get("MARKET_HOST", ""))
    host = host or "127.0.0.1"
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"market serve exited early:\n{log.read_text()}")
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                return LiveServer(base, engine, process, log, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"market serve did not become ready:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    """Terminate the server, killed if it does not stop within 10 s."""
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@contextmanager
def serving(engine: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """`market serve` on a fresh database of `engine`, stopped (and the database dropped) on exit."""
    if engine == "sqlite":
        server = start_server(f"sqlite:///{workdir / 'market.db'}", workdir, "sqlite", env)
        try:
            yield server
        finally:
            stop_server(server)
        return
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        server = start_server(postgres_url(name), workdir, "postgresql", env)
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register(
    client: httpx.Client, role: str = "buyer", password: str = "correct horse battery"
) -> dict[str, str]:
    """A new account and its bearer header: {'id', 'email', 'password', 'Authorization'}."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
    r = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "display_name": role, "role": role},
    )
    assert r.status_code == 201, r.text
    token = client.post("/api/v1/auth/token", json={"email": email, "password": password}).json()[
        "access_token"
    ]
    return {"id": r.json()["id"], "email": email, "password": password, "Authorization": f"Bearer {token}"}


def auth(account: dict[str, str]) -> dict[str, str]:
    """The bearer header of an account made by `register`."""
    return {"Authorization": account["Authorization"]}
