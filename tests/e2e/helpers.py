"""Assertions and builders shared by the end-to-end tests."""

from __future__ import annotations

import random
import re
import string
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.live_server import LiveServer

PROBLEM_JSON = "application/problem+json"
TRACERESPONSE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ADMIN_PASSWORD = "admin-password-123"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium stalls on a closed network, calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def trace_id_of(response: httpx.Response) -> str:
    """The trace id of the `traceresponse` header, which every response must carry."""
    header = response.headers.get("traceresponse", "")
    match = TRACERESPONSE.match(header)
    assert match, f"bad or missing traceresponse header: {header!r}"
    assert match.group(1) != "0" * 32
    return match.group(1)


def assert_problem(
    response: httpx.Response,
    status: int,
    *,
    type_uri: str | None = None,
    fields: set[str] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem with every member the contract names; returns the body.

    `fields`: the exact set of fields named in `errors` (one entry per bad field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON, response.headers
    body = response.json()
    for member in ("type", "title", "status", "detail", "instance", "trace_id"):
        assert member in body, f"{member} missing from {body}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.url.path
    assert HEX32.match(body["trace_id"]), body["trace_id"]
    assert body["trace_id"] == trace_id_of(response)
    if type_uri is not None:
        assert body["type"] == type_uri, body
    else:
        assert body["type"] == "about:blank" or body["type"].startswith("https://"), body
    if fields is not None:
        names = [error["field"] for error in body.get("errors", [])]
        assert sorted(names) == sorted(fields), body
        assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"]), body
    return body


def problem_type(slug: str) -> str:
    return f"https://market.dev/problems/{slug}"


def unique_word(length: int = 10) -> str:
    """A made-up word (letters only, so every tokenizer keeps it whole) no other test uses."""
    return "".join(random.choices(string.ascii_lowercase, k=length))


def item_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "title": "Blue mug",
        "description": "A hand-thrown stoneware mug.",
        "price_cents": 1999,
        "currency": "EUR",
        "stock": 5,
        "category": "kitchen",
    }
    body.update(overrides)
    return body


def create_item(client: httpx.Client, seller: dict[str, str], **overrides: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/items", json=item_body(**overrides), headers={"Authorization": seller["Authorization"]}
    )
    assert r.status_code == 201, r.text
    return r.json()


def run_market(server: LiveServer, *args: str, stdin: str | None = None) -> str:
    """`python -m market ARGS` with the server's environment, as an operator on its host would; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "market", *args],
        input=stdin,
        env=server.env,
        cwd=server.log.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_admin(server: LiveServer, client: httpx.Client) -> dict[str, str]:
    """An admin made the only way there is: `market users create-admin`, password on stdin, the server's env."""
    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    run_market(server, "users", "create-admin", "--email", email, stdin=ADMIN_PASSWORD + "\n")
    r = client.post("/api/v1/auth/token", json={"email": email, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert me["role"] == "admin"
    return {
        "id": me["id"],
        "email": email,
        "password": ADMIN_PASSWORD,
        "Authorization": f"Bearer {r.json()['access_token']}",
    }
