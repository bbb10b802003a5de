"""Seller webhooks over HTTP: setting the endpoint (and the SSRF refusals), and `order.paid` events reaching a
real receiver on 127.0.0.1 from the running service — signed, retried on the schedule, surviving a restart,
stopped by a 410 — with the deliveries listed to their seller only."""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.support.live_server import LiveServer, auth, register, start_server, stop_server
from tests.support.postgres import admin_execute, postgres_url
from tests.support.servers.webhook_receiver import WebhookReceiver, down_receiver_port, running_receiver

from .helpers import RFC3339_UTC, assert_problem, create_item, problem_type, trace_id_of

DEV_SETTINGS = {"MARKET_WEBHOOKS_ALLOW_PRIVATE": "1", "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s,1s,2s"}
PUBLIC_URL = (
    "https://93.184.215.14/hooks/market"  # a literal public address: nothing to resolve, never called
)


@contextmanager
def fresh_database(engine: str, workdir: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{workdir / 'market.db'}"
        return
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dev_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The service with private targets allowed (the receiver is on 127.0.0.1) and a fast retry schedule."""
    workdir = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    with fresh_database(request.param, workdir) as url:
        server = start_server(url, workdir, request.param, DEV_SETTINGS)
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture
def dev_client(dev_server: LiveServer) -> Iterator[httpx.Client]:
    with dev_server.client() as c:
        yield c


def set_webhook(client: httpx.Client, seller: dict[str, str], url: str, **extra: Any) -> httpx.Response:
    return client.put("/api/v1/seller/webhook", json={"url": url, **extra}, headers=auth(seller))


def deliveries(client: httpx.Client, seller: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/api/v1/seller/webhook/deliveries", params=params, headers=auth(seller))
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_deliveries(
    client: httpx.Client,
    seller: dict[str, str],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = deliveries(client, seller)["items"]
        if done(items):
            return items
        assert time.monotonic() < deadline, f"deliveries never settled: {items}"
        time.sleep(0.2)


def seller_with_webhook(client: httpx.Client, url: str) -> tuple[dict[str, str], str, dict[str, Any]]:
    """A seller with an item on sale and `url` as their endpoint: (seller, secret, item)."""
    seller = register(client, "seller")
    item = create_item(client, seller, stock=10)
    r = set_webhook(client, seller, url)
    assert r.status_code == 200, r.text
    return seller, r.json()["secret"], item


def paid_checkout(client: httpx.Client, item: dict[str, Any]) -> httpx.Response:
    buyer = register(client, "buyer")
    r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 2}, headers=auth(buyer))
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_visa"}},
        headers={**auth(buyer), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "paid"
    return r


def settled(items: list[dict[str, Any]]) -> bool:
    return bool(items) and all(d["status"] != "pending" for d in items)


# --- setting the endpoint (the default service: private targets refused) --------------------------------


def test_only_sellers_set_a_webhook_or_list_its_deliveries(client):
    buyer = register(client, "buyer")
    assert_problem(client.put("/api/v1/seller/webhook", json={"url": PUBLIC_URL}), 401)
    assert_problem(set_webhook(client, buyer, PUBLIC_URL), 403)
    assert_problem(client.get("/api/v1/seller/webhook/deliveries", headers=auth(buyer)), 403)
    assert_problem(client.get("/api/v1/seller/webhook/deliveries"), 401)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::1]/hooks",
        "http://localhost:8000/hooks",
        "https://10.0.0.7/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://0.0.0.0:8000/",
    ],
)
def test_urls_leading_to_internal_addresses_are_refused(client, url):
    seller = register(client, "seller")
    body = assert_problem(
        set_webhook(client, seller, url),
        422,
        type_uri=problem_type("webhook-url-not-allowed"),
        fields={"url"},
    )
    assert "public" in body["detail"]
    assert_problem(client.get("/api/v1/seller/webhook", headers=auth(seller)), 404)


def test_every_refused_webhook_url_gets_the_same_answer_whether_or_not_its_host_resolves(client):
    seller = register(client, "seller")
    answers = set()
    for url in (
        "https://no-such-host.invalid/hooks",  # does not resolve
        "http://localhost:8000/hooks",  # resolves to loopback
        "https://10.0.0.7/hooks",  # is private
        "https://168.63.129.16/machine?comp=goalstate",  # Azure wireserver: public-looking, refused
    ):
        body = assert_problem(
            set_webhook(client, seller, url), 422, type_uri=problem_type("webhook-url-not-allowed")
        )
        answers.add((body["title"], body["detail"], repr(body["errors"])))
    assert len(answers) == 1, answers


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/hooks",
        "not a url",
        "https://user:password@93.184.215.14/hooks",
        "https://93.184.215.14/" + "a" * 2000,
        "",
    ],
)
def test_malformed_webhook_urls_are_refused_naming_the_url(client, url):
    seller = register(client, "seller")
    assert_problem(
        set_webhook(client, seller, url), 422, type_uri=problem_type("validation-error"), fields={"url"}
    )


@pytest.mark.parametrize(
    "url", ["https://\U0001f4a9.la/hooks", "http://ex\u00adample.com/hooks", "http://93.184.215.014/hooks"]
)
def test_a_host_name_no_request_can_be_sent_to_is_refused_when_set(dev_client, url):
    # The resolver reads these hosts (IDNA 2003 names that resolve publicly; a leading zero read as octal), the
    # HTTP client refuses them: no delivery could ever go out, so the seller hears it now, whatever the rules.
    seller = register(dev_client, "seller")
    assert_problem(
        set_webhook(dev_client, seller, url), 422, type_uri=problem_type("validation-error"), fields={"url"}
    )
    assert_problem(dev_client.get("/api/v1/seller/webhook", headers=auth(seller)), 404)


def test_a_webhook_gets_a_whsec_secret_that_survives_url_changes_until_rotated(client):
    seller = register(client, "seller")
    assert_problem(client.get("/api/v1/seller/webhook", headers=auth(seller)), 404)

    first = set_webhook(client, seller, PUBLIC_URL)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["url"] == PUBLIC_URL and body["disabled_at"] is None
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24

    moved = set_webhook(client, seller, PUBLIC_URL + "/v2").json()
    assert moved == {**body, "url": PUBLIC_URL + "/v2"}
    assert client.get("/api/v1/seller/webhook", headers=auth(seller)).json() == moved

    rotated = set_webhook(client, seller, PUBLIC_URL + "/v2", rotate_secret=True).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]
    other = set_webhook(client, register(client, "seller"), PUBLIC_URL).json()
    assert other["secret"] not in (body["secret"], rotated["secret"])


def test_the_deliveries_list_refuses_a_filter_it_does_not_take_naming_it(client):
    # The admin's list filters by status; the seller's does not: silently answering with every delivery
    # would look like a filtered list.
    seller = register(client, "seller")
    r = client.get("/api/v1/seller/webhook/deliveries?status=failed", headers=auth(seller))
    assert_problem(r, 400, type_uri=problem_type("invalid-parameter"), fields={"status"})


def test_the_deliveries_list_pages_like_every_list(client):
    seller = register(client, "seller")
    assert deliveries(client, seller) == {"items": [], "next_cursor": None}
    r = client.get("/api/v1/seller/webhook/deliveries?limit=101", headers=auth(seller))
    assert_problem(r, 400)
    r = client.get("/api/v1/seller/webhook/deliveries?cursor=bm9wZQ", headers=auth(seller))
    assert_problem(r, 400, type_uri=problem_type("invalid-cursor"))


# --- delivering (private targets allowed, fast schedule) --------------------------------------------------


def test_a_paid_checkout_sends_the_seller_a_verifiable_order_paid_event(dev_client):
    with running_receiver(200) as receiver:
        seller, secret, item = seller_with_webhook(dev_client, receiver.url)
        checkout = paid_checkout(dev_client, item)
        (request,) = receiver.wait_for(1)
        items = wait_for_deliveries(dev_client, seller, settled)

    event = Webhook(secret).verify(request.body, request.headers)
    order = checkout.json()
    assert event["type"] == "order.paid"
    assert RFC3339_UTC.match(event["timestamp"])
    assert event["data"]["order_id"] == order["id"]
    assert (
        event["data"]["currency"] == "EUR" and event["data"]["seller_total_cents"] == 2 * item["price_cents"]
    )
    assert [line["item_id"] for line in event["data"]["lines"]] == [item["id"]]
    # The attempt is part of the checkout's trace, and says so to the receiver.
    assert request.headers["traceparent"].split("-")[1] == trace_id_of(checkout)

    (delivery,) = items
    assert delivery["id"] == request.headers["webhook-id"]
    assert delivery["event_type"] == "order.paid" and delivery["status"] == "delivered"
    assert delivery["attempt_count"] == 1 and delivery["last_status_code"] == 200
    assert delivery["last_error"] is None and delivery["next_attempt_at"] is None
    assert RFC3339_UTC.match(delivery["created_at"])
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert isinstance(attempt["duration_ms"], int) and RFC3339_UTC.match(attempt["attempted_at"])

    assert deliveries(dev_client, register(dev_client, "seller"))["items"] == []  # only the seller's own
    buyer = register(dev_client, "buyer")
    assert_problem(dev_client.get("/api/v1/seller/webhook/deliveries", headers=auth(buyer)), 403)


def test_an_endpoint_that_keeps_failing_is_retried_on_the_schedule_then_given_up(dev_client):
    with running_receiver(500) as receiver:
        seller, secret, item = seller_with_webhook(dev_client, receiver.url)
        paid_checkout(dev_client, item)
        (delivery,) = wait_for_deliveries(dev_client, seller, settled)
        requests = receiver.received()

    assert delivery["status"] == "failed" and delivery["attempt_count"] == 4  # the first and 3 retries
    assert delivery["next_attempt_at"] is None and delivery["last_status_code"] == 500
    assert [a["status_code"] for a in delivery["attempts"]] == [500] * 4
    assert all(a["error"] for a in delivery["attempts"])
    sent_at = [datetime.fromisoformat(a["attempted_at"]) for a in delivery["attempts"]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent_at)]
    for gap, delay in zip(gaps, (1, 1, 2), strict=True):
        assert delay - 0.1 <= gap <= delay + 3, gaps
    assert len(requests) == 4 and {r.headers["webhook-id"] for r in requests} == {delivery["id"]}
    for r in requests:  # every retry is signed afresh
        Webhook(secret).verify(r.body, r.headers)


def test_a_410_disables_the_endpoint_until_the_url_is_set_again(dev_client):
    with running_receiver(410) as receiver:
        seller, _, item = seller_with_webhook(dev_client, receiver.url)
        paid_checkout(dev_client, item)
        (gone,) = wait_for_deliveries(dev_client, seller, settled)
        assert gone["status"] == "disabled" and gone["last_status_code"] == 410
        endpoint = dev_client.get("/api/v1/seller/webhook", headers=auth(seller)).json()
        assert endpoint["disabled_at"] is not None

        paid_checkout(dev_client, item)  # nothing is queued for a disabled endpoint
        time.sleep(1.5)
        assert len(deliveries(dev_client, seller)["items"]) == 1
        assert len(receiver.received()) == 1

        receiver.respond_with(200)
        again = set_webhook(dev_client, seller, receiver.url).json()
        assert again["disabled_at"] is None and again["secret"] == endpoint["secret"]
        paid_checkout(dev_client, item)
        items = wait_for_deliveries(dev_client, seller, lambda items: len(items) == 2 and settled(items))
    assert [d["status"] for d in items] == ["delivered", "disabled"]
    assert len(receiver.received()) == 2


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_an_event_survives_a_restart_and_reaches_the_receiver_once_it_is_back(engine, tmp_path):
    receiver: WebhookReceiver = down_receiver_port()
    settings = {**DEV_SETTINGS, "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s,1s,2s,2s,2s,2s,2s,2s,2s,2s"}
    with fresh_database(engine, tmp_path) as database_url:
        server = start_server(database_url, tmp_path, engine, settings)
        try:
            with server.client() as client:
                seller, secret, item = seller_with_webhook(client, receiver.url)
                order = paid_checkout(client, item).json()
                (pending,) = wait_for_deliveries(
                    client, seller, lambda items: items and items[0]["attempt_count"]
                )
        finally:
            stop_server(server)
        assert pending["status"] == "pending" and pending["next_attempt_at"] is not None
        assert pending["attempts"][0]["status_code"] is None and pending["attempts"][0]["error"]

        receiver.start()  # the receiver is back, on the same port; the service restarts on the same database
        server = start_server(database_url, tmp_path, engine, settings)
        try:
            with server.client() as client:
                (request,) = receiver.wait_for(1, timeout=30)
                (delivery,) = wait_for_deliveries(client, seller, settled)
                time.sleep(1.5)  # and it is not sent again
        finally:
            stop_server(server)
            receiver.stop()

    assert len(receiver.received()) == 1
    assert Webhook(secret).verify(request.body, request.headers)["data"]["order_id"] == order["id"]
    assert delivery["id"] == pending["id"] == request.headers["webhook-id"]
    assert delivery["status"] == "delivered" and delivery["attempt_count"] >= 2
    assert delivery["attempts"][-1]["status_code"] == 200
    assert all(a["status_code"] is None for a in delivery["attempts"][:-1])
