"""What a provider webhook counts as, in-process with the real app on SQLite: a request that fails
authentication is a rejection (the caller's problem), an authentic event we fail to handle is a failed inbound
delivery (ours), an authentic event handled is a success."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from litestar.testing import TestClient

from market.adapters.payments.signature import sign
from market.application import checkout as checkout_use_cases
from market.bootstrap import build_app
from market.config import Settings

SECRET = "whsec_integration_" + uuid.uuid4().hex
WEBHOOK = "/api/v1/webhooks/payments"


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with serve(tmp_path) as test_client:
        yield test_client


@contextmanager
def serve(tmp_path) -> Iterator[TestClient]:
    """The app on SQLite; its use cases are bound when it is built (patch them before)."""
    settings = Settings.from_env(
        {
            "MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
            "MARKET_VAR_DIR": str(tmp_path),
            "MARKET_PAYMENT_WEBHOOK_SECRET": SECRET,
        },
        dotenv=None,
    )
    with TestClient(build_app(settings)) as test_client:
        yield test_client


def signed_event(event_type: str = "payment.succeeded") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": "evt_" + uuid.uuid4().hex,
            "type": event_type,
            "created": int(time.time()),
            "data": {"order_id": str(uuid.uuid4()), "payment_id": "ch_x"},
        }
    ).encode()
    return body, {"Market-Signature": sign(SECRET, body), "Content-Type": "application/json"}


def inbound(client: TestClient) -> dict[str, float]:
    """outcome -> count of inbound deliveries on /metrics, plus `rejected`: all rejections. The process's
    metrics outlive an app: tests compare before and after."""
    text = client.get("/metrics").text
    counts = {
        outcome: float(value)
        for outcome, value in re.findall(
            r'market_webhook_deliveries_total\{[^}]*market_webhook_direction="inbound"[^}]*'
            r'market_webhook_outcome="(\w+)"[^}]*\} (\S+)',
            text,
        )
    }
    counts["rejected"] = sum(
        float(v) for v in re.findall(r"market_webhook_rejected_total\{[^}]*\} (\S+)", text)
    )
    return counts


def growth(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}


def test_an_error_while_applying_an_authentic_event_is_a_failed_delivery(tmp_path, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(checkout_use_cases, "apply_provider_event", broken)
    body, headers = signed_event()
    with serve(tmp_path) as client:
        before = inbound(client)
        assert client.post(WEBHOOK, content=body, headers=headers).status_code == 500
        assert growth(before, inbound(client)) == {"failure": 1.0}


def test_an_authentic_event_we_do_not_understand_is_a_failed_delivery_not_a_rejection(client):
    body, headers = signed_event("payment.disputed")
    before = inbound(client)
    assert client.post(WEBHOOK, content=body, headers=headers).status_code == 400
    assert growth(before, inbound(client)) == {"failure": 1.0}


def test_an_unsigned_post_is_a_rejection_and_an_authentic_event_a_success(client):
    body, headers = signed_event()
    before = inbound(client)
    assert client.post(WEBHOOK, content=body, headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post(WEBHOOK, content=body, headers=headers).status_code == 200
    assert growth(before, inbound(client)) == {"success": 1.0, "rejected": 1.0}


def _signed_in(client: TestClient, role: str) -> dict[str, str]:
    email, password = f"{role}-{uuid.uuid4().hex[:8]}@example.com", "a-long-password-" + uuid.uuid4().hex
    account = {"email": email, "password": password, "display_name": role, "role": role}
    assert client.post("/api/v1/auth/register", json=account).status_code == 201
    token = client.post("/api/v1/auth/token", json={"email": email, "password": password}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def captured_after_failure(client: TestClient) -> float:
    [value] = re.findall(
        r"^market_payment_captured_after_failure_total(?:\{[^}]*\})? (\S+)$",
        client.get("/metrics").text,
        re.M,
    )
    return float(value)


def test_a_success_event_for_a_failed_order_is_counted_and_logged_not_silently_ignored(client, caplog):
    seller, buyer = _signed_in(client, "seller"), _signed_in(client, "buyer")
    item = {"title": "Mug", "description": "A mug", "price_cents": 1999, "currency": "EUR", "stock": 3}
    item_id = client.post("/api/v1/items", json=item | {"category": "kitchen"}, headers=seller).json()["id"]
    assert client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=buyer).status_code == 200
    pay = {"payment_method": {"type": "card", "token": "tok_chargeDeclined"}}
    checkout = client.post(
        "/api/v1/checkout", json=pay, headers=buyer | {"Idempotency-Key": uuid.uuid4().hex}
    )
    assert checkout.status_code == 402
    [order] = client.get("/api/v1/orders", headers=buyer).json()["items"]
    assert order["status"] == "payment_failed"
    body = json.dumps(
        {
            "id": "evt_" + uuid.uuid4().hex,
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {
                "order_id": order["id"],
                "payment_id": "ch_late",
                "amount_cents": 1999,
                "currency": "EUR",
            },
        }
    ).encode()
    headers = {"Market-Signature": sign(SECRET, body), "Content-Type": "application/json"}
    before = captured_after_failure(client)
    with caplog.at_level("WARNING"):
        answer = client.post(WEBHOOK, content=body, headers=headers)
        again = client.post(WEBHOOK, content=body, headers=headers)
    assert answer.json() == {"received": True, "outcome": "ignored"}
    assert again.json()["outcome"] == "duplicate"
    assert captured_after_failure(client) - before == 1.0, "a redelivery is not a second capture"
    assert client.get(f"/api/v1/orders/{order['id']}", headers=buyer).json()["status"] == "payment_failed"
    [warning] = [r for r in caplog.records if getattr(r, "provider_event_id", None) == json.loads(body)["id"]]
    assert warning.levelname == "WARNING" and warning.order_id == order["id"]
    assert "example.com" not in warning.getMessage() + str(vars(warning))
