"""Secrets never print: the repr of every object that holds one, the URLs we show, the strings that reach Sentry,
and the log lines of the HTTP client."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import logging.config
import pkgutil
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

import market
from market.adapters.db.database import Database
from market.adapters.http.accounts import RegisterBody, TokenBody, TokenOut
from market.adapters.http.orders import PaymentMethodBody
from market.adapters.http.redacted import RedactedStruct
from market.adapters.http.seller import WebhookBody, WebhookOut
from market.application.accounts import Register
from market.application.checkout import PaymentMethodInput
from market.application.ports import AccessToken, ChargeRequest
from market.bootstrap import Ports, bind_use_cases, build_admin_ports, build_ports
from market.config import (
    AlertSettings,
    AuthSettings,
    DatabaseURL,
    PaymentSettings,
    SentrySettings,
    Settings,
    SmtpURL,
    TelemetrySettings,
)
from market.domain.money import Money
from market.domain.redaction import INVALID_URL, safe_url
from market.domain.webhooks import WebhookEndpoint
from market.telemetry import sentry
from market.telemetry.logs import logging_config
from tests.support.fakes import FakeSessionRecorder, FakeSessionStore

SECRET = "s3cret-value-9f8e7d-0123456789abcdef"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# --- repr ---------------------------------------------------------------------------------------------------


def _ports(**secrets: str) -> Ports:
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(Ports)}
    return Ports(**{**values, **secrets})


SECRET_BEARERS = {
    "Register": lambda: Register("ada@example.com", SECRET, "Ada", "buyer"),
    "AccessToken": lambda: AccessToken(SECRET, 3600),
    "ChargeRequest": lambda: ChargeRequest("o", "p", Money(100, "EUR"), "card", SECRET),
    "PaymentMethodInput": lambda: PaymentMethodInput("card", SECRET),
    "Ports (payment webhook secret)": lambda: _ports(payment_webhook_secret=SECRET),
    "Ports (dummy password hash)": lambda: _ports(dummy_password_hash=SECRET),
    "WebhookEndpoint (secret)": lambda: WebhookEndpoint("s", "https://h.example/x", SECRET, NOW, NOW),
    "WebhookEndpoint (URL token)": lambda: WebhookEndpoint(
        "s", f"https://h.example/?t={SECRET}", "w", NOW, NOW
    ),
    "AuthSettings": lambda: AuthSettings(secret_key=SECRET),
    "TelemetrySettings": lambda: TelemetrySettings(metrics_token=SECRET),
    "SentrySettings": lambda: SentrySettings(dsn=f"https://{SECRET}@o1.ingest.sentry.io/1"),
    "PaymentSettings (webhook secret)": lambda: PaymentSettings(webhook_secret=SECRET),
    "PaymentSettings (Stripe key)": lambda: PaymentSettings(stripe_api_key=SECRET),
    "AlertSettings (Slack URL)": lambda: AlertSettings(slack_webhook_url=f"https://hooks.example/{SECRET}"),
    "AlertSettings (SMTP password)": lambda: AlertSettings(
        smtp=SmtpURL.parse(f"smtp://alerts:{SECRET}@mail.example:587"), email_to=("a@example.com",)
    ),
    "DatabaseURL": lambda: DatabaseURL.parse(f"postgresql://market:{SECRET}@db:5432/shop"),
    "Settings": lambda: Settings.from_env(
        {
            "MARKET_DATABASE_URL": f"postgresql://market:{SECRET}@db:5432/shop",
            "MARKET_SECRET_KEY": SECRET,
            "STRIPE_API_KEY": SECRET + "-stripe",
            "MARKET_ALERT_SLACK_WEBHOOK_URL": f"https://hooks.example/{SECRET}",
        },
        dotenv=None,
    ),
    "RegisterBody": lambda: RegisterBody("ada@example.com", SECRET, "Ada", "buyer"),
    "TokenBody": lambda: TokenBody("ada@example.com", SECRET),
    "TokenOut": lambda: TokenOut(SECRET, "bearer", 3600),
    "PaymentMethodBody": lambda: PaymentMethodBody("card", SECRET),
    "WebhookBody": lambda: WebhookBody(f"https://h.example/?token={SECRET}"),
    "WebhookOut (secret)": lambda: WebhookOut("https://h.example/", SECRET, None),
    "WebhookOut (URL token)": lambda: WebhookOut(f"https://h.example/?token={SECRET}", "whsec_x", None),
}


def test_no_bound_use_case_shows_a_secret_of_its_ports_in_its_repr(tmp_path):
    settings = Settings.from_env(
        {"MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "MARKET_PAYMENT_WEBHOOK_SECRET": SECRET},
        dotenv=None,
    )
    database = Database(settings.database)
    services = dataclasses.replace(build_ports(settings, database), dummy_password_hash=SECRET)
    use_cases = bind_use_cases(
        services,
        admin_ports=build_admin_ports(database, services),
        session_store=FakeSessionStore(),
        session_recorder=FakeSessionRecorder(),
    )
    assert "issue_token" in use_cases and "receive_provider_event" in use_cases
    for name, use_case in use_cases.items():
        assert SECRET not in repr(use_case), name


@pytest.mark.parametrize("make", SECRET_BEARERS.values(), ids=SECRET_BEARERS.keys())
def test_the_repr_of_an_object_holding_a_secret_does_not_show_it(make):
    shown = repr(make())
    assert SECRET not in shown, shown


def test_a_redacted_body_still_shows_its_other_fields():
    shown = repr(RegisterBody("ada@example.com", SECRET, "Ada", "buyer"))
    assert shown == "RegisterBody(email='ada@example.com', password='***', display_name='Ada', role='buyer')"


_SECRET_NAME = re.compile(r"password|secret|token|api_key|private_key|dsn")
_TEXT = re.compile(
    r"^(Annotated\[)?str\b"
)  # a str field (a service or a flag under such a name is no secret)


def _our_classes() -> Iterator[type]:
    for module in pkgutil.walk_packages(market.__path__, "market."):
        if module.name.endswith("__main__"):  # runs the CLI
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, type) and value.__module__ == module.name:
                yield value


def test_every_text_field_named_like_a_secret_is_kept_out_of_repr():
    """Also catches the fields added after this test was written."""
    shown = []
    for cls in _our_classes():
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if _SECRET_NAME.search(f.name) and _TEXT.match(str(f.type)) and f.repr:
                    shown.append(f"{cls.__qualname__}.{f.name}")
        elif issubclass(cls, msgspec.Struct):
            hidden = cls.secret_fields if issubclass(cls, RedactedStruct) else frozenset()
            types = msgspec.structs.fields(cls)
            for f in types:
                if _SECRET_NAME.search(f.name) and f.type is str and f.name not in hidden:
                    shown.append(f"{cls.__qualname__}.{f.name}")
    assert shown == [], "secret fields printed by repr()"


# --- URLs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/market?token=abc", "https://hooks.example.com/market"),
        ("https://user:pa55@hooks.example.com:8443/x#frag", "https://hooks.example.com:8443/x"),
        ("http://[::1]:8080/a?b=c", "http://[::1]:8080/a"),
        ("postgresql://market:pw@db:5432/shop?password=pw", "postgresql://db:5432/shop"),
        ("sqlite:///var/market.db", "sqlite:///var/market.db"),
        ("sqlite:////srv/market.db", "sqlite:////srv/market.db"),
        ("https://host:99999999/?token=abc", INVALID_URL),
    ],
)
def test_a_url_is_shown_without_credentials_query_or_fragment(url, shown):
    assert safe_url(url) == shown


def test_a_database_url_is_shown_with_its_user_but_without_password_or_options():
    url = DatabaseURL.parse("postgresql://market:s3cret@db:5432/shop?sslmode=require&password=s3cret")
    assert url.redacted() == "postgresql://market:***@db:5432/shop"


# --- Sentry's last line of defence ----------------------------------------------------------------------


def test_settings_name_every_configured_secret():
    smtp_password, db_password = "smtp-pa55word", "db pa55word"
    settings = Settings.from_env(
        {
            "MARKET_DATABASE_URL": "postgresql://market:db%20pa55word@db:5432/shop",
            "MARKET_SECRET_KEY": "signing-key-1-0123456789abcdefghijklmn",
            "MARKET_METRICS_TOKEN": "metrics-token-1",
            "SENTRY_DSN": "https://public-key@o1.ingest.sentry.io/1",
            "MARKET_PAYMENT_WEBHOOK_SECRET": "payment-webhook-1",
            "STRIPE_API_KEY": "sk_test_123",
            "MARKET_ALERT_SLACK_WEBHOOK_URL": "https://hooks.example/T/B/x",
            "MARKET_ALERT_SMTP_URL": f"smtp://alerts:{smtp_password}@mail.example:587",
            "MARKET_ALERT_EMAIL_TO": "oncall@example.com",
        },
        dotenv=None,
    )
    assert set(settings.secret_values()) >= {
        "signing-key-1-0123456789abcdefghijklmn",
        "metrics-token-1",
        "https://public-key@o1.ingest.sentry.io/1",
        "payment-webhook-1",
        "sk_test_123",
        "https://hooks.example/T/B/x",
        smtp_password,
        db_password,
    }


@pytest.fixture
def known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentry, "_known_secrets", ())


def test_known_secrets_are_filtered_from_any_string_of_an_event(known_secrets):
    sentry.never_send("https://hooks.example/T/B/slack-token-1", "slack-token-1", "short", None)
    event = {
        "exception": {"values": [{"value": "posting to https://hooks.example/T/B/slack-token-1 failed"}]},
        "message": "token slack-token-1, word short",
    }
    scrubbed = sentry.scrub_event(event)
    assert scrubbed["exception"]["values"][0]["value"] == "posting to [Filtered] failed"
    assert scrubbed["message"] == "token [Filtered], word short"  # too short to hunt for


def test_url_credentials_queries_and_webhook_secrets_are_filtered_from_event_strings(known_secrets):
    event = {
        "message": "GET https://user:pw@api.example/v1?token=t0k3n failed; secret whsec_AbC+/d= rejected",
    }
    scrubbed = sentry.scrub_event(event)["message"]
    assert "pw@" not in scrubbed and "t0k3n" not in scrubbed and "whsec_AbC" not in scrubbed
    assert scrubbed.startswith("GET https://[Filtered]@api.example/v1?[Filtered] failed")


@pytest.mark.parametrize(
    "address", ["ada@example.com", "zoé.n@example.com", "anna@exämple.de", "пётр@почта.рф"]
)
def test_e_mail_addresses_of_any_script_are_filtered_from_event_strings(known_secrets, address):
    scrubbed = sentry.scrub_event({"message": f"no account for {address}, sorry"})["message"]
    assert scrubbed == "no account for [Filtered], sorry"


# --- logs ---------------------------------------------------------------------------------------------------


@pytest.fixture
def json_logs_on_stderr(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The service's logging configuration, writing to stderr; the previous configuration is put back."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    names = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    logging.config.dictConfig(logging_config("INFO", stream="ext://sys.stderr"))
    yield
    for handler in root.handlers:
        if handler not in saved_root[1]:
            handler.close()
    root.setLevel(saved_root[0])
    root.handlers[:] = saved_root[1]
    for n, (level, handlers) in saved.items():
        logging.getLogger(n).setLevel(level)
        logging.getLogger(n).handlers[:] = handlers


def test_the_http_client_does_not_log_the_urls_it_calls(json_logs_on_stderr, capfd):
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    with client:
        client.post("https://hooks.example/services/T/B/slack-token-1?token=query-token-1")
    logging.getLogger("market.test").info("a line of ours")  # the configuration does write INFO lines
    written = capfd.readouterr().err
    assert "a line of ours" in written
    assert "slack-token-1" not in written and "query-token-1" not in written
