"""StripePaymentGateway against respx mocks of Stripe's documented request and response shapes (no network:
respx refuses any request it has no route for), Stripe event translation, and its wiring into
`POST /webhooks/payments`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
import stripe
from litestar.di import Provide
from litestar.testing import create_test_client

from market.adapters.http import payment_webhooks
from market.adapters.http.problems import exception_handlers
from market.adapters.payments.events import SignedProviderEvents
from market.adapters.payments.stripe import (
    STRIPE_VERSION,
    InvalidStripeEvent,
    StripePaymentGateway,
    parse_stripe_event,
)
from market.application.ports import ChargeRequest, ChargeResult, ProviderEvent
from market.application.provider_events import receive_provider_event
from market.domain.money import Money
from market.domain.orders import PaymentGatewayUnavailable
from tests.support.fakes import FakeEventPublisher

API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
ORDER_ID = "0b6f1f8e-1111-4c3b-9a57-6d1c3c1f0a01"
PAYMENT_ID = "7a1c2d3e-2222-4f5a-8b9c-0d1e2f3a4b5c"
TOKEN = "pm_card_visa"
PI_ID = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
WEBHOOK_SECRET = "whsec_test_5b7e1a0c9d8f"


def charge_request(token: str = TOKEN) -> ChargeRequest:
    return ChargeRequest(ORDER_ID, PAYMENT_ID, Money(1999, "EUR"), "card", token)


def payment_intent(status: str, **fields: Any) -> dict[str, Any]:
    """A PaymentIntent as Stripe documents it (abridged)."""
    intent: dict[str, Any] = {
        "id": PI_ID,
        "object": "payment_intent",
        "amount": 1999,
        "currency": "eur",
        "status": status,
        "confirmation_method": "automatic",
        "capture_method": "automatic",
        "payment_method": "pm_1MtwBwLkdIwHu7ixl4OuQ1Qp",
        "payment_method_types": ["card"],
        "last_payment_error": None,
        "latest_charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa" if status == "succeeded" else None,
        "metadata": {"order_id": ORDER_ID, "payment_id": PAYMENT_ID},
        "livemode": False,
        "created": 1680800504,
    }
    intent.update(fields)
    return intent


def stripe_error(status: int, **error: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": error}, headers={"Request-Id": "req_8sJv1A2b3C"})


INSUFFICIENT_FUNDS = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
    "charge": "ch_3MtwBwLkdIwHu7ix0snN0B15",
}


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url="https://api.stripe.com", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def gateway() -> AsyncIterator[StripePaymentGateway]:
    gateway = StripePaymentGateway(api_key=API_KEY)
    yield gateway
    await gateway.close()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record with its `extra` fields, as the JSON log formatter would see them."""
    return "\n".join(str(vars(record)) for record in caplog.records)


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), strict_parsing=True)


# --- charge -----------------------------------------------------------------------------------------------


async def test_charge_creates_and_confirms_one_payment_intent_keyed_by_the_payment_id(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(200, json=payment_intent("succeeded"))

    result = await gateway.charge(charge_request())

    assert result == ChargeResult("succeeded", PI_ID)
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert sent.url == "https://api.stripe.com/v1/payment_intents"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Idempotency-Key"] == PAYMENT_ID
    assert sent.headers["Stripe-Version"] == STRIPE_VERSION
    assert form_of(sent) == {
        "amount": ["1999"],
        "currency": ["eur"],
        "confirm": ["true"],
        "error_on_requires_action": ["true"],
        "payment_method_types[]": ["card"],
        "payment_method": [TOKEN],
        "metadata[order_id]": [ORDER_ID],
        "metadata[payment_id]": [PAYMENT_ID],
    }


async def test_a_legacy_card_token_is_sent_as_payment_method_data(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(200, json=payment_intent("succeeded"))

    await gateway.charge(charge_request(token="tok_visa"))

    form = form_of(route.calls.last.request)
    assert form["payment_method_data[type]"] == ["card"]
    assert form["payment_method_data[card][token]"] == ["tok_visa"]
    assert "payment_method" not in form


async def test_requests_have_a_bounded_timeout(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(200, json=payment_intent("succeeded"))

    await gateway.charge(charge_request())

    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout["connect"] == 10.0
    assert timeout["read"] == 10.0


@pytest.mark.parametrize("status", ["processing", "requires_action"])
async def test_an_unfinished_payment_intent_is_processing(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway, status: str
) -> None:
    stripe_api.post("/v1/payment_intents").respond(200, json=payment_intent(status))

    assert await gateway.charge(charge_request()) == ChargeResult("processing", PI_ID)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (INSUFFICIENT_FUNDS, "insufficient_funds"),
        ({"type": "card_error", "code": "expired_card", "message": "Your card has expired."}, "expired_card"),
    ],
)
async def test_a_card_error_is_a_decline_with_stripes_reason(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway, error: dict[str, Any], reason: str
) -> None:
    failed = payment_intent("requires_payment_method", last_payment_error=error)
    stripe_api.post("/v1/payment_intents").mock(
        return_value=stripe_error(402, **error, payment_intent=failed)
    )

    assert await gateway.charge(charge_request()) == ChargeResult("declined", PI_ID, reason)


async def test_an_invalid_request_is_a_decline_that_does_not_log_stripes_message(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway, caplog: pytest.LogCaptureFixture
) -> None:
    stripe_api.post("/v1/payment_intents").mock(
        return_value=stripe_error(
            400,
            type="invalid_request_error",
            code="resource_missing",
            param="payment_method",
            message=f"No such PaymentMethod: '{TOKEN}'",
        )
    )

    with caplog.at_level(logging.DEBUG):
        result = await gateway.charge(charge_request())

    assert result == ChargeResult("declined", None, "invalid_request")
    assert "resource_missing" in logged(caplog)
    assert TOKEN not in logged(caplog)


UNKNOWN_OUTCOMES = {
    "500": stripe_error(500, type="api_error", message="An unknown error occurred"),
    "502": httpx.Response(502, text="<html>Bad Gateway</html>"),
    "429": stripe_error(429, type="invalid_request_error", code="rate_limit", message="Too many requests"),
    "409 same key in flight": stripe_error(409, type="idempotency_error", message="in progress"),
    "400 key reused": stripe_error(400, type="idempotency_error", message="Keys for idempotent requests"),
    "401 bad api key": stripe_error(401, type="invalid_request_error", message="Invalid API Key"),
    "200 unreadable": httpx.Response(200, text="not json"),
    "200 unknown status": httpx.Response(200, json=payment_intent("teleported")),
}


@pytest.mark.parametrize("response", UNKNOWN_OUTCOMES.values(), ids=UNKNOWN_OUTCOMES.keys())
async def test_an_answer_that_does_not_settle_the_charge_means_the_gateway_is_unavailable(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway, response: httpx.Response
) -> None:
    stripe_api.post("/v1/payment_intents").mock(return_value=response)

    with pytest.raises(PaymentGatewayUnavailable) as raised:
        await gateway.charge(charge_request())

    assert raised.value.order_id == ORDER_ID


TRANSPORT_FAILURES = {
    "read timeout": httpx.ReadTimeout("timed out"),
    "connect timeout": httpx.ConnectTimeout("timed out"),
    "connection refused": httpx.ConnectError("[Errno 111] Connection refused"),
}


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES.values(), ids=TRANSPORT_FAILURES.keys())
async def test_timeouts_and_connection_errors_mean_the_gateway_is_unavailable_without_leaking_the_token(
    stripe_api: respx.MockRouter,
    gateway: StripePaymentGateway,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    route = stripe_api.post("/v1/payment_intents").mock(side_effect=failure)

    with caplog.at_level(logging.DEBUG), pytest.raises(PaymentGatewayUnavailable) as raised:
        await gateway.charge(charge_request())

    assert route.called
    assert raised.value.order_id == ORDER_ID
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert TOKEN not in str(raised.value) and TOKEN not in repr(raised.value.args)
    assert TOKEN not in logged(caplog)
    assert type(failure).__name__ in logged(caplog)


async def test_close_closes_the_http_client(stripe_api: respx.MockRouter) -> None:
    gateway = StripePaymentGateway(api_key=API_KEY)
    stripe_api.post("/v1/payment_intents").respond(200, json=payment_intent("succeeded"))

    await gateway.close()

    with pytest.raises(RuntimeError, match="closed"):
        await gateway.charge(charge_request())


# --- lookup -----------------------------------------------------------------------------------------------


def search_result(*intents: dict[str, Any]) -> dict[str, Any]:
    return {"object": "search_result", "url": "/v1/payment_intents/search", "has_more": False,
            "next_page": None, "data": list(intents)}  # fmt: skip


def list_page(*intents: dict[str, Any], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "url": "/v1/payment_intents", "has_more": has_more, "data": list(intents)}


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        (payment_intent("succeeded"), ChargeResult("succeeded", PI_ID)),
        (payment_intent("processing"), ChargeResult("processing", PI_ID)),
        (
            payment_intent("requires_payment_method", last_payment_error=INSUFFICIENT_FUNDS),
            ChargeResult("declined", PI_ID, "insufficient_funds"),
        ),
        (payment_intent("canceled"), ChargeResult("declined", PI_ID, "canceled")),
    ],
)
async def test_lookup_finds_the_orders_payment_intent_by_its_metadata(
    stripe_api: respx.MockRouter,
    gateway: StripePaymentGateway,
    intent: dict[str, Any],
    expected: ChargeResult,
) -> None:
    route = stripe_api.get("/v1/payment_intents/search").respond(200, json=search_result(intent))

    assert await gateway.lookup(ORDER_ID, PAYMENT_ID) == expected
    sent = route.calls.last.request
    assert sent.method == "GET"
    assert sent.url.params["query"] == f"metadata['order_id']:'{ORDER_ID}'"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Stripe-Version"] == STRIPE_VERSION


async def test_lookup_quotes_the_order_id_in_the_search_query(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    route = stripe_api.get("/v1/payment_intents/search").respond(
        200, json=search_result(payment_intent("succeeded"))
    )

    await gateway.lookup("o'1\\", PAYMENT_ID)

    assert route.calls.last.request.url.params["query"] == "metadata['order_id']:'o\\'1\\\\'"


async def test_lookup_prefers_a_succeeded_payment_intent_among_several(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    failed = payment_intent("canceled", id="pi_failed")
    stripe_api.get("/v1/payment_intents/search").respond(
        200, json=search_result(failed, payment_intent("succeeded"), failed)
    )

    assert await gateway.lookup(ORDER_ID, PAYMENT_ID) == ChargeResult("succeeded", PI_ID)


async def test_lookup_is_none_when_stripe_has_no_payment_intent_for_the_order(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    stripe_api.get("/v1/payment_intents/search").respond(200, json=search_result())
    recent = stripe_api.get("/v1/payment_intents").respond(
        200, json=list_page(payment_intent("succeeded", id="pi_other", metadata={"order_id": "another"}))
    )

    assert await gateway.lookup(ORDER_ID, PAYMENT_ID) is None
    params = recent.calls.last.request.url.params
    assert abs(int(params["created[gte]"]) - (time.time() - 3600)) < 60
    assert params["limit"] == "100"


async def test_lookup_finds_a_payment_intent_not_yet_searchable_among_recent_ones(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    """Stripe's search lags behind writes; a miss there is not proof that Stripe never got the charge."""
    stripe_api.get("/v1/payment_intents/search").respond(200, json=search_result())
    other = payment_intent("succeeded", id="pi_other", metadata={})
    recent = stripe_api.get("/v1/payment_intents").mock(
        side_effect=[
            httpx.Response(200, json=list_page(other, has_more=True)),
            httpx.Response(200, json=list_page(payment_intent("succeeded"))),
        ]
    )

    assert await gateway.lookup(ORDER_ID, PAYMENT_ID) == ChargeResult("succeeded", PI_ID)
    assert recent.calls[1].request.url.params["starting_after"] == "pi_other"


async def test_lookup_is_unavailable_when_there_are_too_many_recent_payment_intents_to_be_sure(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway
) -> None:
    stripe_api.get("/v1/payment_intents/search").respond(200, json=search_result())
    other = payment_intent("succeeded", id="pi_other", metadata={})
    stripe_api.get("/v1/payment_intents").respond(200, json=list_page(other, has_more=True))

    with pytest.raises(PaymentGatewayUnavailable):
        await gateway.lookup(ORDER_ID, PAYMENT_ID)


LOOKUP_FAILURES = {
    "500": httpx.Response(500, json={"error": {"type": "api_error"}}),
    "429": httpx.Response(429, json={"error": {"type": "invalid_request_error", "code": "rate_limit"}}),
    "timeout": httpx.ReadTimeout("timed out"),
    "connection refused": httpx.ConnectError("Connection refused"),
}


@pytest.mark.parametrize("failure", LOOKUP_FAILURES.values(), ids=LOOKUP_FAILURES.keys())
async def test_lookup_never_reports_a_missing_charge_when_stripe_did_not_answer(
    stripe_api: respx.MockRouter, gateway: StripePaymentGateway, failure: httpx.Response | Exception
) -> None:
    stripe_api.get("/v1/payment_intents/search").mock(side_effect=[failure])

    with pytest.raises(PaymentGatewayUnavailable):
        await gateway.lookup(ORDER_ID, PAYMENT_ID)


# --- webhook events ---------------------------------------------------------------------------------------


def stripe_event(
    event_type: str, obj: dict[str, Any], event_id: str = "evt_1NG8Du2eZvKYlo2CUI79vXWy"
) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": STRIPE_VERSION,
            "created": 1686089970,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()


def charge_object(*, refunded: bool, amount_refunded: int) -> dict[str, Any]:
    return {
        "id": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "charge",
        "amount": 1999,
        "amount_refunded": amount_refunded,
        "currency": "eur",
        "payment_intent": PI_ID,
        "refunded": refunded,
        "metadata": {"order_id": ORDER_ID, "payment_id": PAYMENT_ID},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            stripe_event("payment_intent.succeeded", payment_intent("succeeded")),
            ProviderEvent("evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment.succeeded", ORDER_ID, PI_ID, None),
        ),
        (
            stripe_event(
                "payment_intent.payment_failed",
                payment_intent("requires_payment_method", last_payment_error=INSUFFICIENT_FUNDS),
            ),
            ProviderEvent(
                "evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment.failed", ORDER_ID, PI_ID, "insufficient_funds"
            ),
        ),
        (
            stripe_event("charge.refunded", charge_object(refunded=True, amount_refunded=1999)),
            ProviderEvent("evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment.refunded", ORDER_ID, PI_ID, None),
        ),
    ],
    ids=["succeeded", "payment_failed", "refunded"],
)
def test_stripe_events_translate_to_ours(body: bytes, expected: ProviderEvent) -> None:
    assert parse_stripe_event(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        stripe_event("charge.refunded", charge_object(refunded=False, amount_refunded=500)),
        stripe_event("payment_intent.succeeded", payment_intent("succeeded", metadata={})),
        stripe_event("customer.created", {"id": "cus_NffrFeUfNV2Hib", "object": "customer"}),
    ],
    ids=["partial refund", "not our payment intent", "other event type"],
)
def test_stripe_events_not_about_our_orders_translate_to_nothing(body: bytes) -> None:
    assert parse_stripe_event(body) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "payment_intent.succeeded"}',
        b"[" * 100_000 + b"]" * 100_000,  # once a RecursionError
        b'{"id": "\xff"}',
    ],
)
def test_a_body_that_is_not_a_stripe_event_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidStripeEvent):
        parse_stripe_event(body)


@pytest.fixture
def applied() -> list[ProviderEvent]:
    """The events the webhook hands to the use case that applies them (applying them is its own business)."""
    return []


def post_webhook(
    gateway_name: str, body: bytes, signature: str, applied: list[ProviderEvent]
) -> httpx.Response:
    """The route with the intake use case bound as bootstrap binds it, but for the applying use case."""

    async def apply_provider_event(event: ProviderEvent) -> str:
        applied.append(event)
        return "applied"

    receive = partial(
        receive_provider_event,
        source=SignedProviderEvents.for_gateway(gateway_name, WEBHOOK_SECRET),
        apply=apply_provider_event,
        events=FakeEventPublisher(),
    )
    with create_test_client(
        route_handlers=[payment_webhooks.payment_webhook],
        dependencies={"receive_provider_event": Provide(lambda: receive, sync_to_thread=False)},
        exception_handlers=exception_handlers(),
    ) as client:
        return client.post(
            "/webhooks/payments",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )


def test_the_webhook_applies_a_signed_stripe_event_when_stripe_is_the_gateway(
    applied: list[ProviderEvent],
) -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"))
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)

    response = post_webhook("stripe", body, signature, applied)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "outcome": "applied"}
    assert applied == [
        ProviderEvent("evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment.succeeded", ORDER_ID, PI_ID, None)
    ]


def test_the_webhook_acknowledges_and_ignores_stripe_events_not_about_our_orders(
    applied: list[ProviderEvent],
) -> None:
    body = stripe_event("charge.refunded", charge_object(refunded=False, amount_refunded=500))
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)

    response = post_webhook("stripe", body, signature, applied)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "outcome": "ignored"}
    assert applied == []


@pytest.mark.parametrize("gateway_name", ["stripe", "sandbox"])
def test_the_webhook_refuses_a_stripe_event_with_a_bad_signature(
    applied: list[ProviderEvent], gateway_name: str
) -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"))
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_someone_else")

    response = post_webhook(gateway_name, body, signature, applied)

    assert response.status_code == 400
    assert applied == []


def test_the_webhook_refuses_a_stripe_event_when_the_sandbox_is_the_gateway(
    applied: list[ProviderEvent],
) -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"))
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)

    response = post_webhook("sandbox", body, signature, applied)

    assert response.status_code == 400
    assert applied == []
