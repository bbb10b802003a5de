"""In-process alerting over HTTP: `market serve` with MARKET_ALERT_EVAL_INTERVAL=1 and MARKET_ALERT_FOR=1s, a local
HTTP receiver as the Slack webhook and a local SMTP sink. A single 500 and declined checkouts never fire (too little
evidence; declines are not failures of ours); sustained real 500s fire `high_error_rate` after the hold, good API
traffic resolves it (health probes do not count; the 5 min windows never slide during the test), GET /admin/alerts
shows the states, and each receiver gets exactly one firing and one resolved message. SQLite only: alerting reads
the process's metrics, not the database."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.live_server import LiveServer, auth, register, start_server, stop_server
from tests.support.servers.smtp_sink import SmtpSink
from tests.support.servers.webhook_receiver import WebhookReceiver

from .helpers import RFC3339_UTC, assert_problem, create_admin, create_item

ALERTS = "/api/v1/admin/alerts"
RULES = {"high_error_rate", "payment_failures", "slow_api", "webhook_failures", "backup_stale"}
MESSAGE = re.compile(
    r"^\[(FIRING|RESOLVED)\] (\w+) \((critical|warning)\) on market at http://127\.0\.0\.1:\d+: "
)


@pytest.fixture(scope="module")
def slack() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, slack: WebhookReceiver, smtp: SmtpSink
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("alerts")
    env = {
        "MARKET_ALERT_EVAL_INTERVAL": "1",
        "MARKET_ALERT_FOR": "1s",
        "MARKET_ALERT_SLACK_WEBHOOK_URL": slack.url,
        "MARKET_ALERT_SMTP_URL": smtp.url,
        "MARKET_ALERT_EMAIL_TO": "oncall@example.com,sre@example.com",
        "MARKET_ALERT_EMAIL_FROM": "market-alerts@example.com",
    }
    server = start_server(f"sqlite:///{workdir / 'market.db'}", workdir, "sqlite", env)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> dict[str, str]:
    with live_server.client() as c:
        return create_admin(live_server, c)


# --- helpers ----------------------------------------------------------------------------------------------


def slack_messages(slack: WebhookReceiver) -> list[tuple[str, str]]:
    """(state, rule) of every message the Slack receiver got, after checking each one's shape."""
    out = []
    for request in slack.received():
        assert request.headers["content-type"] == "application/json"
        body = json.loads(request.body)
        assert set(body) == {"text"}, body
        match = MESSAGE.match(body["text"])
        assert match, body["text"]
        out.append((match[1], match[2]))
    return out


def email_messages(smtp: SmtpSink) -> list[tuple[str, str]]:
    out = []
    for mail in smtp.received():
        assert mail.recipients == ["oncall@example.com", "sre@example.com"]
        assert mail.sender == "market-alerts@example.com"
        match = MESSAGE.match(mail.message.get_content())
        assert match, mail.message.get_content()
        assert mail.message["Subject"] == f"[{match[1]}] {match[2]} ({match[3]})"
        out.append((match[1], match[2]))
    return out


def alerts(client: httpx.Client, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = client.get(ALERTS, headers=auth(admin))
    assert r.status_code == 200, r.text
    return {alert["name"]: alert for alert in r.json()["alerts"]}


def wait_for_state(
    client: httpx.Client, admin: dict[str, str], rule: str, state: str, within_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        alert = alerts(client, admin)[rule]
        if alert["state"] == state or time.monotonic() > deadline:
            assert alert["state"] == state, alert
            return alert
        time.sleep(0.2)


def wait_for_message(slack: WebhookReceiver, smtp: SmtpSink, expected: tuple[str, str]) -> None:
    deadline = time.monotonic() + 15
    while expected not in slack_messages(slack) or expected not in email_messages(smtp):
        assert time.monotonic() < deadline, (expected, slack_messages(slack), email_messages(smtp))
        time.sleep(0.1)


def assert_announced_once(slack: WebhookReceiver, smtp: SmtpSink, rule: str) -> None:
    """Exactly one firing and one resolved message for `rule`, firing first, on both channels, even after a few
    more evaluations."""
    time.sleep(3)
    for messages in (slack_messages(slack), email_messages(smtp)):
        mine = [state for state, name in messages if name == rule]
        assert mine == ["FIRING", "RESOLVED"], messages


def checkout(client: httpx.Client, buyer: dict[str, str], token: str) -> httpx.Response:
    headers = {**auth(buyer), "Idempotency-Key": uuid.uuid4().hex}
    return client.post(
        "/api/v1/checkout", json={"payment_method": {"type": "card", "token": token}}, headers=headers
    )


def fill_cart(client: httpx.Client, buyer: dict[str, str], item_id: str) -> None:
    r = client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=auth(buyer))
    assert r.status_code == 200, r.text


# --- the tests --------------------------------------------------------------------------------------------


def test_alerts_are_for_admins_only(client, admin):
    assert_problem(client.get(ALERTS), 401)
    assert_problem(client.get(ALERTS, headers={"Authorization": "Bearer not-a-token"}), 401)
    for role in ("buyer", "seller"):
        assert_problem(client.get(ALERTS, headers=auth(register(client, role=role))), 403)


def test_every_rule_is_listed_and_ok_while_nothing_is_wrong(client, admin, slack, smtp):
    r = client.get(ALERTS, headers=auth(admin))
    assert r.status_code == 200, r.text
    body = r.json()
    assert RFC3339_UTC.match(body["evaluated_at"]), body
    listed = {alert["name"]: alert for alert in body["alerts"]}
    assert set(listed) == RULES
    severities = {name: alert["severity"] for name, alert in listed.items()}
    assert severities == {
        "high_error_rate": "critical",
        "payment_failures": "critical",
        "slow_api": "warning",
        "webhook_failures": "warning",
        "backup_stale": "warning",
    }
    for alert in listed.values():
        assert {"name", "severity", "state", "value", "threshold", "since"} <= set(alert)
        assert alert["state"] == "ok"
        assert alert["since"] is None
        assert isinstance(alert["threshold"], int | float)
    assert listed["payment_failures"]["value"] is None  # no payment yet: nothing to measure
    assert listed["webhook_failures"]["value"] is None
    assert listed["backup_stale"]["value"] is None  # no schedule, no backup: not expected
    assert listed["high_error_rate"]["threshold"] == 0.05
    assert slack.received() == [] and smtp.received() == []


def error(client: httpx.Client, admin: dict[str, str]) -> None:
    problem = assert_problem(
        client.post("/api/v1/admin/test-monitoring", json={"kind": "error"}, headers=auth(admin)), 500
    )
    assert problem["trace_id"]


def test_a_single_500_and_declined_checkouts_never_fire(client, admin, slack, smtp):
    seller, buyer = register(client, role="seller"), register(client)
    item = create_item(client, seller, stock=100, price_cents=500)
    fill_cart(client, buyer, item["id"])
    for _ in range(3):  # declines are the card holder's bank answering, not a failure of ours
        assert_problem(checkout(client, buyer, "tok_chargeDeclined"), 402)
    error(client, admin)
    for _ in range(9):
        assert client.get("/api/v1/items").status_code == 200
    time.sleep(4)  # several evaluations, each longer than MARKET_ALERT_FOR
    listed = alerts(client, admin)
    assert listed["high_error_rate"]["state"] == "ok"
    assert listed["high_error_rate"]["value"] is None  # 1 error in ~10 requests: not enough to measure
    assert listed["payment_failures"]["state"] == "ok"
    assert listed["payment_failures"]["value"] is None
    assert slack_messages(slack) == [] and email_messages(smtp) == []


def test_the_payment_failure_self_test_moves_the_payments_report_and_fires_nothing(
    client, admin, slack, smtp
):
    def declined() -> int:
        r = client.get("/api/v1/admin/analytics/payments", headers=auth(admin))
        assert r.status_code == 200, r.text
        return r.json()["declined"]

    before = declined()
    for _ in range(3):
        r = client.post(
            "/api/v1/admin/test-monitoring", json={"kind": "payment_failure"}, headers=auth(admin)
        )
        assert r.status_code == 200, r.text
    assert declined() == before + 3
    time.sleep(3)
    assert alerts(client, admin)["payment_failures"]["state"] == "ok"
    assert slack_messages(slack) == [] and email_messages(smtp) == []


def test_sustained_500s_fire_high_error_rate_after_the_hold_and_good_traffic_resolves_it(
    client, admin, slack, smtp
):
    for _ in range(20):  # until 5xx are more than 5 % of the window's API responses, for MARKET_ALERT_FOR
        for _ in range(10):
            error(client, admin)
        time.sleep(1.5)
        if alerts(client, admin)["high_error_rate"]["state"] == "firing":
            break
    wait_for_message(slack, smtp, ("FIRING", "high_error_rate"))
    firing = wait_for_state(client, admin, "high_error_rate", "firing")
    assert firing["value"] > 0.05

    for _ in range(100):  # health probes are not API traffic: they never dilute the ratio
        assert client.get("/health/live").status_code == 200
    time.sleep(3)
    assert alerts(client, admin)["high_error_rate"]["state"] == "firing"

    for _ in range(40):  # good API traffic, until the ratio has stayed at or below 4 % for the hold
        for _ in range(100):
            assert client.get("/api/v1/items").status_code == 200
        time.sleep(1.5)
        if alerts(client, admin)["high_error_rate"]["state"] == "ok":
            break
    wait_for_message(slack, smtp, ("RESOLVED", "high_error_rate"))
    resolved = wait_for_state(client, admin, "high_error_rate", "ok")
    assert resolved["value"] <= 0.04
    assert resolved["since"] > firing["since"]
    assert_announced_once(slack, smtp, "high_error_rate")


def test_only_the_rules_that_fired_were_announced(slack, smtp):
    for messages in (slack_messages(slack), email_messages(smtp)):
        assert Counter(messages) <= Counter(
            {("FIRING", "high_error_rate"): 1, ("RESOLVED", "high_error_rate"): 1}
        ), messages
