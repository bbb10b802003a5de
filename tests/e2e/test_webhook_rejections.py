"""Unauthenticated posts to the provider webhook are the caller's problem: they are answered 400, counted as
`market_webhook_rejected_total` by reason, and kept out of the `webhook_failures` ratio, so a stranger with curl
cannot page on-call. `market serve` with MARKET_ALERT_EVAL_INTERVAL=1 (SQLite: alerting reads the process's
metrics, not the database)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from market.adapters.payments.signature import TOLERANCE_S, sign
from tests.support.live_server import LiveServer, auth, serving

from .helpers import assert_problem, create_admin, problem_type

WEBHOOK = "/api/v1/webhooks/payments"
SECRET = "whsec_e2e_" + uuid.uuid4().hex
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "MARKET_ALERT_EVAL_INTERVAL": "1",
        "MARKET_ALERT_FOR": "1s",  # where rules have a hold time, keep it short (ignored where they do not)
        "MARKET_PAYMENT_WEBHOOK_SECRET": SECRET,
    }
    with serving("sqlite", tmp_path_factory.mktemp("rejections"), env) as server:
        yield server


def event_body() -> bytes:
    event = {
        "id": "evt_" + uuid.uuid4().hex,
        "type": "payment.succeeded",
        "created": int(time.time()),
        "data": {"payment_id": "ch_x", "order_id": str(uuid.uuid4()), "amount_cents": 100, "currency": "EUR"},
    }
    return json.dumps(event).encode()


def post(client: httpx.Client, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Market-Signature"] = signature
    return client.post(WEBHOOK, content=body, headers=headers)


def counter(client: httpx.Client, family: str) -> dict[frozenset[tuple[str, str]], float]:
    """labels -> value of every sample of one counter family on /metrics."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        match = SAMPLE.match(line)
        if match and match[1] == family:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match[2]))
            out[labels] = float(match[3])
    return out


def webhook_failures(client: httpx.Client, admin: dict[str, str]) -> dict:
    r = client.get("/api/v1/admin/alerts", headers=auth(admin))
    assert r.status_code == 200, r.text
    return next(alert for alert in r.json()["alerts"] if alert["name"] == "webhook_failures")


def test_unsigned_and_forged_posts_are_counted_as_rejections_and_never_fire_webhook_failures(live_server):
    now = int(time.time())
    forgeries = {
        "missing_signature": lambda body: None,
        "malformed": lambda body: "t=abc,v1=00",
        "stale_signature": lambda body: sign(SECRET, body, now - TOLERANCE_S - 60),
        "bad_signature": lambda body: sign("whsec_not_the_secret", body),
    }
    with live_server.client() as client:
        admin = create_admin(live_server, client)
        for _ in range(30):
            for signature in forgeries.values():
                body = event_body()
                assert_problem(
                    post(client, body, signature(body)), 400, type_uri=problem_type("invalid-provider-event")
                )
        # One genuine event (for an order we do not know: acknowledged): the only delivery the rule may count.
        body = event_body()
        genuine = post(client, body, sign(SECRET, body))
        assert genuine.status_code == 200 and genuine.json()["outcome"] == "unknown_order", genuine.text

        rejected = counter(client, "market_webhook_rejected_total")
        assert rejected == {
            frozenset({("market_webhook_rejection_reason", reason)}): 30.0 for reason in forgeries
        }
        deliveries = counter(client, "market_webhook_deliveries_total")
        inbound_failure = frozenset(
            {("market_webhook_direction", "inbound"), ("market_webhook_outcome", "failure")}
        )
        assert deliveries[inbound_failure] == 0.0  # the series exists from the start, at zero
        assert {labels: value for labels, value in deliveries.items() if value} == {
            frozenset({("market_webhook_direction", "inbound"), ("market_webhook_outcome", "success")}): 1.0
        }

        # Counted as failed deliveries, the rejected posts would be more than the rule's minimum volume (20
        # deliveries, 3 failures) and fire it; as they are not, one authentic delivery is too little to measure.
        time.sleep(3.5)  # a few evaluations, each past MARKET_ALERT_FOR
        alert = webhook_failures(client, admin)
        assert alert["value"] is None and alert["state"] == "ok", alert
