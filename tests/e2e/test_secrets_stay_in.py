"""Every secret the process knows stays in the process: `market serve` configured with a secret of every kind
(signing key, payment webhook secret, Slack URL, SMTP password, Stripe key, metrics token), reporting to a
stand-in Sentry and exporting spans to a stand-in collector. One session drives every 500 path there is (the
monitoring self-test, a registration and a sign-in whose database query fails), a seller webhook delivered to
a URL carrying a `?token=`, and an alert announced on Slack and by e-mail. Then no Sentry envelope, no span
and no stdout line may hold any of those secrets, nor the passwords and bearer tokens that were in flight.
SQLite only: what leaves the process does not depend on the engine, and a renamed column is the simplest way
to make a real query fail."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live_server import LiveServer, auth, start_server, stop_server
from tests.support.servers.smtp_sink import SmtpSink
from tests.support.servers.telemetry_receivers import OtlpHttpReceiver, SentryReceiver
from tests.support.servers.webhook_receiver import WebhookReceiver

from .helpers import assert_problem, create_admin, create_item, trace_id_of


@dataclass
class Session:
    server: LiveServer
    sentry: SentryReceiver
    otlp: OtlpHttpReceiver
    secrets: dict[str, str] = field(default_factory=dict)
    """What must never leave the process, by what it is."""
    error_traces: list[str] = field(default_factory=list)

    def leaks(self, payloads: list[bytes]) -> list[str]:
        return sorted(
            name for name, secret in self.secrets.items() if any(secret.encode() in p for p in payloads)
        )


def _register(client: httpx.Client, role: str) -> dict[str, str]:
    email, password = f"{role}-{uuid.uuid4().hex[:10]}@example.com", "pw-" + uuid.uuid4().hex
    body = {"email": email, "password": password, "display_name": role, "role": role}
    assert client.post("/api/v1/auth/register", json=body).status_code == 201
    r = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"email": email, "password": password, "Authorization": f"Bearer {r.json()['access_token']}"}


@contextmanager
def users_table_broken(database: Path) -> Iterator[None]:
    """Every query touching `users.password_hash` fails (a real database error, so a 500) until exit."""
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE users RENAME COLUMN password_hash TO password_hash_gone")
    try:
        yield
    finally:
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE users RENAME COLUMN password_hash_gone TO password_hash")


def _wait(probe: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def run_session(
    session: Session, slack: WebhookReceiver, seller_hooks: WebhookReceiver, workdir: Path
) -> None:
    secrets = session.secrets
    with session.server.client() as c:
        seller, buyer = _register(c, "seller"), _register(c, "buyer")
        admin = create_admin(session.server, c)
        for name, account in (("seller", seller), ("buyer", buyer), ("admin", admin)):
            secrets[f"{name} password"] = account["password"]
            secrets[f"{name} bearer token"] = account["Authorization"].split()[1]

        # A seller webhook whose URL carries a token in its query, delivered after a paid checkout.
        query_token = "qt-" + uuid.uuid4().hex
        secrets["seller webhook URL token"] = query_token
        r = c.put(
            "/api/v1/seller/webhook",
            json={"url": f"{seller_hooks.url}?token={query_token}"},
            headers=auth(seller),
        )
        assert r.status_code == 200, r.text
        secrets["seller whsec_ secret"] = r.json()["secret"]
        item = create_item(c, seller, stock=10, price_cents=500)
        assert c.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(buyer)).is_success
        r = c.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_visa"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        seller_hooks.wait_for(1)

        # A declined card (which never fires an alert), then gateway timeouts, which fire `payment_failures`
        # (10 attempts, at least 3 failed): Slack and e-mail are notified.
        assert c.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(buyer)).is_success
        r = c.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_chargeDeclined"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 402, r.text
        for _ in range(9):
            r = c.post(
                "/api/v1/checkout",
                json={"payment_method": {"type": "card", "token": "tok_gatewayTimeout"}},
                headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code == 503, r.text
        slack.wait_for(1, timeout=30)

        # Every 500 path: the monitoring self-test, and a registration and a sign-in whose query fails.
        r = c.post("/api/v1/admin/test-monitoring", json={"kind": "error"}, headers=auth(admin))
        assert_problem(r, 500)
        session.error_traces.append(trace_id_of(r))
        in_flight = "pw-" + uuid.uuid4().hex
        secrets["password of a failed registration"] = in_flight
        with users_table_broken(workdir / "market.db"):
            r = c.post(
                "/api/v1/auth/register",
                json={
                    "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
                    "password": in_flight,
                    "display_name": "new",
                    "role": "buyer",
                },
            )
            assert_problem(r, 500)
            session.error_traces.append(trace_id_of(r))
            r = c.post("/api/v1/auth/token", json={"email": buyer["email"], "password": buyer["password"]})
            assert_problem(r, 500)
            session.error_traces.append(trace_id_of(r))

    def all_reported() -> bool:
        traces = {e.get("contexts", {}).get("trace", {}).get("trace_id") for e in session.sentry.events()}
        return set(session.error_traces) <= traces

    _wait(all_reported, "a Sentry event for each 500")
    _wait(lambda: session.otlp.spans(), "spans")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    workdir = tmp_path_factory.mktemp("secrets")
    slack_token = "slack-" + uuid.uuid4().hex
    smtp_password = "smtp-" + uuid.uuid4().hex
    sentry, otlp = SentryReceiver().start(), OtlpHttpReceiver().start()
    slack, seller_hooks = WebhookReceiver().start(), WebhookReceiver().start()
    smtp = SmtpSink(require_auth=("alerts", smtp_password)).start()
    slack_url = f"http://127.0.0.1:{slack.port}/services/T000/B000/{slack_token}"
    secrets = {
        "MARKET_SECRET_KEY": "key-" + uuid.uuid4().hex,
        "MARKET_PAYMENT_WEBHOOK_SECRET": "pwh-" + uuid.uuid4().hex,
        "STRIPE_API_KEY": "sk_test_" + uuid.uuid4().hex,
        "MARKET_METRICS_TOKEN": "mt-" + uuid.uuid4().hex,
    }
    env = {
        **secrets,
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_ENVIRONMENT": "test",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "MARKET_ALERT_EVAL_INTERVAL": "1",
        "MARKET_ALERT_FOR": "1s",
        "MARKET_ALERT_SLACK_WEBHOOK_URL": slack_url,
        "MARKET_ALERT_SMTP_URL": smtp.url,
        "MARKET_ALERT_EMAIL_TO": "oncall@example.com",
        "MARKET_WEBHOOKS_ALLOW_PRIVATE": "1",
        "MARKET_LOG_LEVEL": "INFO",
    }
    server = start_server(f"sqlite:///{workdir / 'market.db'}", workdir, "sqlite", env)
    try:
        done = Session(server, sentry, otlp, secrets={**secrets, "Slack URL": slack_url})
        done.secrets |= {"Slack URL token": slack_token, "SMTP password": smtp_password}
        run_session(done, slack, seller_hooks, workdir)
        smtp.wait_for(1, timeout=30)
        yield done
    finally:
        stop_server(server)
        for receiver in (sentry, otlp, slack, seller_hooks, smtp):
            receiver.stop()


def test_no_sentry_envelope_of_any_500_holds_a_secret_the_process_knows(session):
    payloads = session.sentry.raw_payloads()
    assert len(session.sentry.events()) >= len(session.error_traces) == 3
    leaks = session.leaks(payloads)
    assert leaks == [], f"secrets reached Sentry: {leaks}"


def test_no_span_holds_a_secret_url_a_query_token_or_any_other_secret(session):
    payloads = session.otlp.raw_payloads()
    assert payloads
    leaks = session.leaks(payloads)
    assert leaks == [], f"secrets reached a span: {leaks}"


def test_no_log_line_holds_a_secret_url_a_query_token_or_any_other_secret(session):
    log = session.server.log.read_bytes()
    assert b'"webhook attempt"' in log  # the lines about the seller webhook and the alerts were written
    leaks = session.leaks([log])
    assert leaks == [], f"secrets reached stdout: {leaks}"
