"""Seller webhook rules without a database: what an attempt means for a delivery, which URLs are acceptable,
Standard Webhooks signatures (cross-checked with the `standardwebhooks` package) and the SSRF guard."""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from market.adapters.webhooks.signing import new_secret, signature_headers
from market.adapters.webhooks.ssrf import SsrfGuard, refusal
from market.domain.errors import ValidationFailed, WebhookUrlNotAllowed
from market.domain.webhooks import (
    MAX_WEBHOOK_URL,
    AttemptResult,
    DeliveryStatus,
    Verdict,
    check_webhook_url,
    judge_attempt,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCHEDULE = (5, 300, 1800)


# --- what an attempt means -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_delivers(status):
    assert judge_attempt(AttemptResult(status, None, 12), 1, SCHEDULE, NOW) == Verdict(
        DeliveryStatus.DELIVERED
    )


def test_410_disables_the_endpoint_whatever_attempt_it_is():
    for attempt in (1, 4):
        verdict = judge_attempt(AttemptResult(410, "HTTP 410", 5), attempt, SCHEDULE, NOW)
        assert verdict == Verdict(DeliveryStatus.DISABLED, disable_endpoint=True)


@pytest.mark.parametrize(
    ("result", "attempt", "delay"),
    [
        (AttemptResult(500, "HTTP 500", 3), 1, 5),
        (AttemptResult(None, "connection failed", 1), 2, 300),
        (AttemptResult(302, "HTTP 302: redirects are not followed", 2), 3, 1800),
        (AttemptResult(404, "HTTP 404", 2), 1, 5),
    ],
)
def test_other_failures_are_retried_after_the_next_delay_of_the_schedule(result, attempt, delay):
    verdict = judge_attempt(result, attempt, SCHEDULE, NOW)
    assert verdict == Verdict(DeliveryStatus.PENDING, next_attempt_at=NOW + timedelta(seconds=delay))


def test_a_failure_after_the_last_retry_fails_the_delivery():
    assert judge_attempt(AttemptResult(503, "HTTP 503", 3), len(SCHEDULE) + 1, SCHEDULE, NOW) == Verdict(
        DeliveryStatus.FAILED
    )


# --- the URL's form --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/market", "http://93.184.215.14:8080/x?token=abc", " https://example.com "],
)
def test_http_and_https_urls_are_accepted_trimmed(url):
    assert check_webhook_url(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "example.com/hook",
        "https://",
        "https://user:secret@example.com/hook",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com:0/hook",  # no service listens on port 0: a request there cannot be delivered
        "http://93.184.215.14:00/x",
        "https://example.com/" + "a" * MAX_WEBHOOK_URL,
    ],
)
def test_other_urls_are_refused_naming_the_url_field(url):
    with pytest.raises(ValidationFailed) as caught:
        check_webhook_url(url)
    assert [e.field for e in caught.value.errors] == ["url"]


# --- signatures --------------------------------------------------------------------------------------------


def test_secrets_are_whsec_and_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32


def test_signed_messages_verify_with_the_standard_webhooks_library():
    secret = new_secret()
    body = json.dumps({"type": "order.paid", "data": {"order_id": "o1"}}).encode()
    headers = signature_headers(secret, "d3b0c442-98fc-4c1a-8f7d-2c2e4e0b9a11", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "order.paid", "data": {"order_id": "o1"}}


def test_a_changed_body_id_or_secret_does_not_verify():
    secret = new_secret()
    body = b'{"type":"order.paid"}'
    headers = signature_headers(secret, "msg-1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"type":"order.refunded"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg-2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


# --- the SSRF guard ----------------------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.1.2.3", "multicast"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ("192.0.2.10", "private"),  # documentation range
    ("255.255.255.255", "private"),
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_refused_saying_why(address, kind):
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::1]/hook",
        "https://10.0.0.7/hook",
        "http://localhost:8000/hook",  # a name: refused for what it resolves to
    ],
)
async def test_the_guard_refuses_urls_leading_to_internal_addresses(url):
    with pytest.raises(WebhookUrlNotAllowed) as caught:
        await SsrfGuard(allow_private=False).check(url)
    assert [e.field for e in caught.value.errors] == ["url"]


async def test_the_guard_refuses_a_name_with_any_internal_address_and_does_not_echo_it():
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.20.30.40"]

    with pytest.raises(WebhookUrlNotAllowed) as caught:
        await SsrfGuard(allow_private=False, resolver=resolver).check("https://hooks.example.com/x")
    assert "10.20.30.40" not in caught.value.errors[0].message


async def test_the_guard_hands_out_the_checked_addresses_of_a_public_name():
    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    guard = SsrfGuard(allow_private=False, resolver=resolver)
    assert await guard.addresses("https://hooks.example.com/x") == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]


@pytest.mark.parametrize(
    "address",
    [
        "168.63.129.16",  # Azure wireserver: a public address, yet the platform's own agent endpoint
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "::ffff:168.63.129.16",
    ],
)
def test_cloud_metadata_addresses_are_refused_even_where_they_look_public(address):
    assert refusal(ipaddress.ip_address(address)) is not None


async def _refusal_for(url: str, answers: list[str] | None) -> ValidationFailed:
    async def resolver(host: str, port: int) -> list[str]:
        if answers is None:
            raise OSError("Name or service not known")
        return answers

    with pytest.raises(ValidationFailed) as caught:
        await SsrfGuard(allow_private=False, resolver=resolver).check(url)
    return caught.value


async def test_every_refusal_reads_the_same_so_it_reveals_nothing_about_internal_names():
    refusals = [
        await _refusal_for("https://nowhere.invalid/", None),  # does not resolve
        await _refusal_for("https://intranet.example.com/", ["10.1.2.3"]),  # resolves to a private address
        await _refusal_for("https://wire.example.com/", ["168.63.129.16"]),  # resolves to a metadata address
        await _refusal_for("https://10.1.2.3/", []),  # is a private address
        await _refusal_for("https://[::1]/", []),  # is loopback
    ]
    shapes = {(type(r), r.detail, tuple((e.field, e.message) for e in r.errors)) for r in refusals}
    assert len(shapes) == 1
    assert all(isinstance(r, WebhookUrlNotAllowed) for r in refusals)


async def test_the_development_setting_lets_private_targets_through():
    guard = SsrfGuard(allow_private=True)
    for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/", "http://localhost/"):
        await guard.check(url)
        assert await guard.addresses(url) is None
