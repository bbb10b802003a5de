"""MARKET_ALERT_*: the evaluation interval and where notifications go, with one-line errors naming the variable."""

from __future__ import annotations

import pytest

from market.config import AlertSettings, ConfigError, Settings, SmtpURL


def _alerts(**environ: str) -> AlertSettings:
    return Settings.from_env(environ, dotenv=None).alerts


def test_by_default_rules_are_evaluated_every_15_s_and_nobody_is_notified():
    alerts = _alerts()
    assert alerts == AlertSettings(eval_interval_s=15, slack_webhook_url=None, smtp=None, email_to=())


def test_slack_and_email_settings_are_read():
    alerts = _alerts(
        MARKET_ALERT_EVAL_INTERVAL="1",
        MARKET_ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/xyz",
        MARKET_ALERT_SMTP_URL="smtp://alerts%40example.com:p%40ss@mail.example.com:587",
        MARKET_ALERT_EMAIL_TO=" oncall@example.com, sre@example.com ,",
        MARKET_ALERT_EMAIL_FROM="market@example.com",
    )
    assert alerts.eval_interval_s == 1
    assert alerts.slack_webhook_url == "https://hooks.slack.com/services/T0/B0/xyz"
    assert alerts.smtp == SmtpURL(
        host="mail.example.com", port=587, implicit_tls=False, username="alerts@example.com", password="p@ss"
    )
    assert alerts.email_to == ("oncall@example.com", "sre@example.com")
    assert alerts.email_from == "market@example.com"


@pytest.mark.parametrize(("raw", "seconds"), [("1", 1), ("1s", 1), ("15s", 15), ("1m", 60)])
def test_the_evaluation_interval_takes_seconds_or_a_duration_as_alert_for_does(raw, seconds):
    assert _alerts(MARKET_ALERT_EVAL_INTERVAL=raw).eval_interval_s == seconds


def test_secrets_stay_out_of_the_settings_repr():
    alerts = _alerts(
        MARKET_ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/slack-secret",
        MARKET_ALERT_SMTP_URL="smtp://user:smtp-secret@mail.example.com",
        MARKET_ALERT_EMAIL_TO="oncall@example.com",
    )
    assert "slack-secret" not in repr(alerts)
    assert "smtp-secret" not in repr(alerts)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpURL("mail.example.com", 25)),
        ("smtps://u:p@mail.example.com", SmtpURL("mail.example.com", 465, True, "u", "p")),
        ("SMTP://127.0.0.1:2525", SmtpURL("127.0.0.1", 2525)),
    ],
)
def test_smtp_urls_have_default_ports_per_scheme(url, expected):
    assert SmtpURL.parse(url) == expected


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MARKET_ALERT_EVAL_INTERVAL": "0"}, "MARKET_ALERT_EVAL_INTERVAL"),
        ({"MARKET_ALERT_EVAL_INTERVAL": "2h"}, "MARKET_ALERT_EVAL_INTERVAL"),  # over an hour
        ({"MARKET_ALERT_EVAL_INTERVAL": "15 s"}, "MARKET_ALERT_EVAL_INTERVAL"),
        ({"MARKET_ALERT_SLACK_WEBHOOK_URL": "hooks.slack.com/x"}, "MARKET_ALERT_SLACK_WEBHOOK_URL"),
        ({"MARKET_ALERT_SLACK_WEBHOOK_URL": "ftp://example.com/x"}, "MARKET_ALERT_SLACK_WEBHOOK_URL"),
        ({"MARKET_ALERT_SMTP_URL": "smtp://mail.example.com"}, "MARKET_ALERT_EMAIL_TO"),
        ({"MARKET_ALERT_EMAIL_TO": "oncall@example.com"}, "MARKET_ALERT_SMTP_URL"),
        (
            {"MARKET_ALERT_SMTP_URL": "http://mail.example.com", "MARKET_ALERT_EMAIL_TO": "a@example.com"},
            "MARKET_ALERT_SMTP_URL",
        ),
        (
            {
                "MARKET_ALERT_SMTP_URL": "smtp://mail.example.com:port",
                "MARKET_ALERT_EMAIL_TO": "a@example.com",
            },
            "MARKET_ALERT_SMTP_URL",
        ),
        (
            {"MARKET_ALERT_SMTP_URL": "smtp://mail.example.com", "MARKET_ALERT_EMAIL_TO": "oncall"},
            "MARKET_ALERT_EMAIL_TO",
        ),
        # Lists separated otherwise than by commas would be one recipient the SMTP server refuses at every alert.
        (
            {
                "MARKET_ALERT_SMTP_URL": "smtp://mail.example.com",
                "MARKET_ALERT_EMAIL_TO": "oncall@example.com sre@example.com",
            },
            "MARKET_ALERT_EMAIL_TO",
        ),
        (
            {
                "MARKET_ALERT_SMTP_URL": "smtp://mail.example.com",
                "MARKET_ALERT_EMAIL_TO": "oncall@example.com;sre@example.com",
            },
            "MARKET_ALERT_EMAIL_TO",
        ),
        # A line break cannot go into a mail header: every alert e-mail would fail to be built.
        (
            {
                "MARKET_ALERT_SMTP_URL": "smtp://mail.example.com",
                "MARKET_ALERT_EMAIL_TO": "oncall@example.com",
                "MARKET_ALERT_EMAIL_FROM": "market@example.com\r\nBcc: someone@example.net",
            },
            "MARKET_ALERT_EMAIL_FROM",
        ),
        (
            {
                "MARKET_ALERT_SMTP_URL": "smtp://mail.example.com",
                "MARKET_ALERT_EMAIL_TO": "oncall@example.com",
                "MARKET_ALERT_EMAIL_FROM": "market",
            },
            "MARKET_ALERT_EMAIL_FROM",
        ),
    ],
)
def test_bad_alert_settings_stop_the_start_with_one_line_naming_the_variable(environ, variable):
    with pytest.raises(ConfigError) as error:
        _alerts(**environ)
    message = str(error.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_an_address_on_a_mail_servers_own_domain_is_one_address():
    alerts = _alerts(
        MARKET_ALERT_SMTP_URL="smtp://127.0.0.1:25",
        MARKET_ALERT_EMAIL_TO="root@localhost",
        MARKET_ALERT_EMAIL_FROM="market@localhost",
    )
    assert (alerts.email_to, alerts.email_from) == (("root@localhost",), "market@localhost")
