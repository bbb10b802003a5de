"""Any bytes as a JSON body, to every endpoint that takes one, through the real app: never a 5xx, always a
problem+json when refused. Also any signature header on the provider webhook. In process (Litestar's test
client) on SQLite: the body validator does not depend on the engine."""

from __future__ import annotations

import json
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
            st.sampled_from(["email", "title", "price_cents", "payment_method", "url", "x"]), JSON
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
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seller = self._account("seller")
        self.buyer = self._account("buyer")
        r = client.post("/api/v1/items", json=VALID["item"], headers=self.seller)
        assert r.status_code == 201, r.text
        self.item_id = r.json()["id"]

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
        yield Api(client)


def assert_answered(response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), what


@given(body=BODIES, content_type=CONTENT_TYPES, target=st.integers(0, 7))
@example(body=b'{"email": "\xff\xfe"}', content_type="application/json", target=0)
@example(body=b"[" * 500 + b"]" * 500, content_type="application/json", target=2)
def test_any_body_to_any_endpoint_is_answered_without_a_server_error(api, body, content_type, target):
    method, path, headers = api.targets()[target]
    r = api.client.request(method, path, content=body, headers={**headers, "Content-Type": content_type})
    assert_answered(r, f"{method} {path} {body[:200]!r}")


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)


@given(signature=HEADER_TEXT, body=BODIES, which=st.sampled_from(["Market-Signature", "Stripe-Signature"]))
@example(signature="t=1,v1=é", body=b"{}", which="Market-Signature")
@example(signature="t=" + "9" * 400 + ",v1=" + "0" * 64, body=b"{}", which="Stripe-Signature")
def test_any_signature_header_on_the_provider_webhook_is_answered_without_a_server_error(
    api, signature, body, which
):
    r = api.client.post(
        "/api/v1/webhooks/payments",
        content=body,
        headers={"Content-Type": "application/json", which: signature.encode("latin-1")},
    )
    assert_answered(r, f"{which}: {signature!r}")
