"""`MARKET_LOG_LEVEL=DEBUG` is a documented setting someone turns on to chase a problem: it must not turn the
logs into a copy of the users table. Database drivers log every statement with its parameters at DEBUG
(aiosqlite does), so an account's e-mail address, password hash and new password hash would reach stdout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer, serving


@pytest.fixture(params=["sqlite", "postgresql"])
def debug_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with serving(request.param, tmp_path, {"MARKET_LOG_LEVEL": "DEBUG"}) as server:
        yield server


def test_debug_logs_hold_no_email_password_hash_or_token(debug_server: LiveServer) -> None:
    email = f"debug-{uuid.uuid4().hex[:10]}@example.com"
    password, new_password = "pw-" + uuid.uuid4().hex, "pw-" + uuid.uuid4().hex
    with debug_server.client() as client:
        body = {"email": email, "password": password, "display_name": "Debbie", "role": "seller"}
        assert client.post("/api/v1/auth/register", json=body).status_code == 201
        signed_in = client.post("/api/v1/auth/token", json={"email": email, "password": password})
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        changed = client.post(
            "/api/v1/me/password",
            headers=bearer,
            json={"current_password": password, "new_password": new_password},
        )
        assert changed.status_code == 204, changed.text

    written = debug_server.log.read_text()
    assert '"level":"DEBUG"' in written  # the level is in force: the check below is not vacuous
    for name, secret in {
        "e-mail": email,
        "password": password,
        "new password": new_password,
        "token": token,
        "password hash": "$argon2",
    }.items():
        assert secret not in written, f"the {name} reached stdout"
