"""Any bytes as a JSON body, to every endpoint that takes one, through the real app: never a 5xx, always a
problem+json when refused. Also any signature header on the provider webhook. In process (Litestar's test
client) on SQLite: the body validator does not depend on the engine."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from litestar.testing import TestClient

from market.bootstrap import build_app
from market.config import Settings

pytestmark = pytest.mark.fuzz

PASSWORD = "fuzzing-password-123"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
VALID = {
    "register": {"email": "a@example.com", "password": PASSWORD, "display_name": "A", "role": "buyer"},
    "token": {"email": "a@example.com", "password": PASSWORD},
    "item": {"title": "Mug", "price_cents": 1999, "currency": "EUR", "stock": 5, "category": "kitchen"},
    "quantity": {"quantity": 1},
    "checkout": {"payment_method": {"type": "card", "token": "tok_visa"}},
    "webhook": {"url": "https://example.com/hook"},
    "event": {"id": "evt_1", "type": "payment.succeeded", "created": 1, "data": {"order_id": "x"}},
    "account": {"role": "seller", "status": "disabled"},
    "moderation": {"status": "suspended", "reason": "counterfeit"},
}


def _spliced(raw: bytes, at: int, junk: bytes) -> bytes:
    at %= len(raw) + 1
    return raw[:at] + junk + raw[at:]


BODIES = st.one_of(
    st.binary(max_size=512),
    JSON.map(lambda value: json.dumps(value).encode()),
    JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
    # A valid body of some endpoint with its fields replaced by anything, or with bytes spliced in.
    st.builds(
        lambda shape, changes: json.dumps({**VALID[shape], **changes}).encode(),
        st.sampled_from(sorted(VALID)),
        st.dictionaries(
            st.sampled_from(
                ["email", "title", "price_cents", "payment_method", "url", "status", "reason", "x"]
            ),
            JSON,
        ),
    ),
    st.builds(
        lambda shape, at, junk: _spliced(json.dumps(VALID[shape]).encode(), at, junk),
        st.sampled_from(sorted(VALID)),
        st.integers(0, 200),
        st.binary(min_size=1, max_size=8) | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\u0000"]),
    ),
    st.integers(1, 5_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 5_000).map(lambda depth: b'{"title": ' + b"[" * depth + b"]" * depth + b"}"),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded"]
)


class Api:
    def __init__(self, client: TestClient, env: dict[str, str]) -> None:
        self.client = client
        self.env = env
        self.seller = self._account("seller")
        self.buyer = self._account("buyer")
        r = client.post("/api/v1/items", json=VALID["item"], headers=self.seller)
        assert r.status_code == 201, r.text
        self.item_id = r.json()["id"]
        self.admin = self._admin()

    def _admin(self) -> dict[str, str]:
        """Admins are made only by an operator: `market users create-admin`, the password on stdin."""
        email = f"fuzz-admin-{uuid.uuid4().hex[:8]}@example.com"
        subprocess.run(
            [sys.executable, "-m", "market", "users", "create-admin", "--email", email],
            input=PASSWORD + "\n",
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        token = self.client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def _account(self, role: str) -> dict[str, str]:
        email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": PASSWORD, "display_name": role, "role": role}
        assert self.client.post("/api/v1/auth/register", json=body).status_code == 201
        token = self.client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def targets(self) -> list[tuple[str, str, dict[str, str]]]:
        return [
            ("POST", "/api/v1/auth/register", {}),
            ("POST", "/api/v1/auth/token", {}),
            ("POST", "/api/v1/items", self.seller),
            ("PATCH", f"/api/v1/items/{self.item_id}", self.seller),
            ("PUT", f"/api/v1/cart/items/{self.item_id}", self.buyer),
            ("POST", "/api/v1/checkout", {**self.buyer, "Idempotency-Key": uuid.uuid4().hex}),
            ("PUT", "/api/v1/seller/webhook", self.seller),
            ("POST", "/api/v1/webhooks/payments", {}),
            ("PATCH", f"/api/v1/admin/users/{uuid.uuid4()}", self.admin),
            ("PATCH", f"/api/v1/admin/items/{self.item_id}", self.admin),
        ]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir: Path = tmp_path_factory.mktemp("fuzz-http")
    env = {
        "MARKET_DATABASE_URL": f"sqlite:///{workdir / 'market.db'}",
        "MARKET_VAR_DIR": str(workdir / "var"),
        "MARKET_RATE_LIMITS": "off",
        "MARKET_LOG_LEVEL": "ERROR",
        "MARKET_WEBHOOKS_ALLOW_PRIVATE": "1",
    }
    with TestClient(build_app(Settings.from_env(env, dotenv=None)), raise_server_exceptions=False) as client:
        yield Api(client, env)


def assert_answered(response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), what


@given(body=BODIES, content_type=CONTENT_TYPES, target=st.integers(0, 9))
@example(body=b'{"email": "\xff\xfe"}', content_type="application/json", target=0)
@example(body=b"[" * 500 + b"]" * 500, content_type="application/json", target=2)
def test_any_body_to_any_endpoint_is_answered_without_a_server_error(api, body, content_type, target):
    method, path, headers = api.targets()[target]
    r = api.client.request(method, path, content=body, headers={**headers, "Content-Type": content_type})
    assert_answered(r, f"{method} {path} {body[:200]!r}")


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
# `{now}` becomes the current time when sent: inside the tolerance, the candidates get compared.
SIGNATURES = HEADER_TEXT | st.builds(lambda v1: "t={now},v1=" + v1, HEADER_TEXT)


@given(signature=SIGNATURES, body=BODIES, which=st.sampled_from(["Market-Signature", "Stripe-Signature"]))
@example(signature="t={now},v1=é", body=b"{}", which="Market-Signature")
@example(signature="t=" + "9" * 400 + ",v1=" + "0" * 64, body=b"{}", which="Stripe-Signature")
def test_any_signature_header_on_the_provider_webhook_is_answered_without_a_server_error(
    api, signature, body, which
):
    header = signature.replace("{now}", str(int(time.time())))
    r = api.client.post(
        "/api/v1/webhooks/payments",
        content=body,
        headers={"Content-Type": "application/json", which: header.encode("latin-1")},
    )
    assert_answered(r, f"{which}: {header!r}")


QUERY_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["-" * 33, "0001-01-01", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]),
    st.builds(
        lambda token, n: token * n, st.sampled_from(["-", "!", "(", '"', "[", "%"]), st.integers(0, 2_000)
    ),
    st.integers(1, 1_500).map(lambda depth: base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).decode()),
)
QUERIES = {
    "/api/v1/items": ["q", "cursor", "category", "min_price_cents", "max_price_cents", "seller_id", "limit"],
    "/api/v1/seller/dashboard": ["from", "to"],
    "/api/v1/orders": ["cursor", "limit", "status", "buyer_id", "seller_id", "from", "to"],
    "/api/v1/admin/orders": ["cursor", "limit", "status", "buyer_id", "seller_id", "from", "to"],
    "/api/v1/admin/users": ["q", "role", "status", "limit", "cursor", "rol"],
    "/api/v1/admin/audit": ["actor_id", "action", "target_id", "from", "to", "limit", "cursor"],
    "/api/v1/admin/webhooks/deliveries": ["seller_id", "status", "limit", "cursor"],
    "/api/v1/admin/analytics/funnel": ["from", "to"],
    "/api/v1/admin/analytics/carts": ["from", "to"],
    "/api/v1/seller/webhook/deliveries": ["cursor", "limit"],
}


@given(
    path=st.sampled_from(sorted(QUERIES)),
    values=st.lists(QUERY_TEXT, min_size=7, max_size=7),
    present=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_any_query_string_is_answered_without_a_server_error(api, path, values, present):
    params = {name: value for name, value, on in zip(QUERIES[path], values, present, strict=False) if on}
    who = api.admin if "/admin/" in path else api.seller
    r = api.client.get(path, params=params, headers=who)
    assert_answered(r, f"GET {path} {params!r}"[:600])


@given(segment=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=300))
@example(segment="%00")
def test_any_path_segment_as_an_id_is_answered_without_a_server_error(api, segment):
    for path in ("/api/v1/items/{}", "/api/v1/orders/{}", "/api/v1/admin/analytics/{}"):
        url = path.format(urllib.parse.quote(segment, safe=""))
        r = api.client.get(url, headers=api.admin if "admin" in path else api.buyer)
        assert_answered(r, f"GET {url}"[:600])


TOKENS = HEADER_TEXT | st.builds(
    lambda head, body, tail: f"Bearer {head}.{body}.{tail}",
    st.binary(max_size=60).map(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")),
    JSON.map(lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")),
    HEADER_TEXT,
)


@given(
    authorization=TOKENS,
    traceparent=HEADER_TEXT,
    session=HEADER_TEXT,
    idempotency_key=HEADER_TEXT,
)
def test_any_auth_trace_session_and_idempotency_headers_are_answered_without_a_server_error(
    api, authorization, traceparent, session, idempotency_key
):
    headers = {
        "Authorization": authorization.encode("latin-1"),
        "traceparent": traceparent.encode("latin-1"),
        "X-Session-Id": session.encode("latin-1"),
        "Idempotency-Key": idempotency_key.encode("latin-1"),
    }
    for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/items"), ("POST", "/api/v1/checkout")):
        r = api.client.request(method, path, headers=headers, json=VALID["checkout"])
        assert_answered(r, f"{method} {path} {headers!r}"[:600])
