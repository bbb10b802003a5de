"""StripePaymentGateway.refund against respx mocks of Stripe's documented Refunds API (`POST /v1/refunds`),
and Stripe's `refund.*` events translated to ours."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from market.adapters.payments.stripe import StripePaymentGateway, parse_stripe_event
from market.application.ports import ProviderEvent, RefundRequest, RefundResult
from market.domain.money import Money
from market.domain.orders import PaymentGatewayUnavailable
from tests.unit.test_stripe_gateway import (
    API_KEY,
    ORDER_ID,
    PAYMENT_ID,
    PI_ID,
    form_of,
    stripe_error,
    stripe_event,
)

REFUND_ID = "5f0c1a2b-3333-4d5e-8f9a-0b1c2d3e4f50"
RE_ID = "re_3MtwBwLkdIwHu7ix0Qz2Bl9k"


def refund_request(
    provider_payment_id: str | None = PI_ID, reason: str = "requested_by_customer"
) -> RefundRequest:
    return RefundRequest(REFUND_ID, ORDER_ID, PAYMENT_ID, provider_payment_id, Money(500, "EUR"), reason)


def stripe_refund(status: str, **fields: Any) -> dict[str, Any]:
    """A Refund as Stripe documents it (abridged)."""
    refund: dict[str, Any] = {
        "id": RE_ID,
        "object": "refund",
        "amount": 500,
        "currency": "eur",
        "payment_intent": PI_ID,
        "charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "status": status,
        "reason": "requested_by_customer",
        "metadata": {"order_id": ORDER_ID, "refund_id": REFUND_ID},
        "created": 1692942318,
    }
    refund.update(fields)
    return refund


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url="https://api.stripe.com", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def gateway() -> AsyncIterator[StripePaymentGateway]:
    gateway = StripePaymentGateway(api_key=API_KEY)
    yield gateway
    await gateway.close()


async def test_a_refund_is_one_stripe_refund_of_the_payment_intent_keyed_by_our_refund_id(
    stripe_api, gateway
):
    route = stripe_api.post("/v1/refunds").respond(200, json=stripe_refund("succeeded"))

    assert await gateway.refund(refund_request()) == RefundResult("succeeded", RE_ID)

    sent = route.calls.last.request
    assert sent.headers["Idempotency-Key"] == REFUND_ID
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(sent) == {
        "payment_intent": [PI_ID],
        "amount": ["500"],
        "reason": ["requested_by_customer"],
        "metadata[order_id]": [ORDER_ID],
        "metadata[refund_id]": [REFUND_ID],
    }


async def test_a_reason_stripe_does_not_know_stays_ours(stripe_api, gateway):
    route = stripe_api.post("/v1/refunds").respond(200, json=stripe_refund("succeeded"))
    await gateway.refund(refund_request(reason="damaged"))
    assert "reason" not in form_of(route.calls.last.request)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", RefundResult("pending", RE_ID)),
        ("requires_action", RefundResult("pending", RE_ID)),
        ("failed", RefundResult("declined", RE_ID, "lost_or_stolen_card")),
        ("canceled", RefundResult("declined", RE_ID, "lost_or_stolen_card")),
    ],
)
async def test_the_refunds_status_decides(stripe_api, gateway, status, expected):
    stripe_api.post("/v1/refunds").respond(
        200, json=stripe_refund(status, failure_reason="lost_or_stolen_card")
    )
    assert await gateway.refund(refund_request()) == expected


async def test_a_refusal_is_a_decline_with_stripes_code(stripe_api, gateway):
    stripe_api.post("/v1/refunds").mock(
        return_value=stripe_error(
            400,
            type="invalid_request_error",
            code="charge_already_refunded",
            message="Charge ch_x has been refunded.",
        )
    )
    assert await gateway.refund(refund_request()) == RefundResult("declined", None, "charge_already_refunded")


@pytest.mark.parametrize(
    "response",
    [
        stripe_error(500, type="api_error", message="boom"),
        stripe_error(429, type="rate_limit_error", message="slow down"),
        stripe_error(409, type="idempotency_error", message="in flight"),
        stripe_error(
            400, type="idempotency_error", message="Keys for idempotent requests can only be used..."
        ),
        stripe_error(401, type="invalid_request_error", message="Invalid API Key"),
        httpx.Response(200, json={"id": RE_ID, "status": "mystery"}),
    ],
    ids=["5xx", "429", "409", "idempotency_error", "401", "unknown status"],
)
async def test_an_unknown_outcome_means_the_gateway_is_unavailable(stripe_api, gateway, response):
    stripe_api.post("/v1/refunds").mock(return_value=response)
    with pytest.raises(PaymentGatewayUnavailable):
        await gateway.refund(refund_request())


async def test_a_timeout_means_the_gateway_is_unavailable(stripe_api, gateway):
    stripe_api.post("/v1/refunds").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PaymentGatewayUnavailable):
        await gateway.refund(refund_request())


async def test_a_payment_stripe_never_charged_is_not_sent(stripe_api, gateway):
    route = stripe_api.post("/v1/refunds").respond(200, json=stripe_refund("succeeded"))
    assert await gateway.refund(refund_request(provider_payment_id=None)) == RefundResult(
        "declined", None, "no_provider_payment"
    )
    assert route.call_count == 0


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated"])
def test_a_succeeded_refund_event_names_our_refund_and_its_amount(event_type):
    assert parse_stripe_event(stripe_event(event_type, stripe_refund("succeeded"))) == ProviderEvent(
        "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "payment.refunded",
        ORDER_ID,
        PI_ID,
        refund_id=REFUND_ID,
        provider_refund_id=RE_ID,
        amount_cents=500,
    )


def test_a_refund_made_in_stripes_dashboard_has_no_refund_id_of_ours():
    made_there = stripe_refund("succeeded", metadata={"order_id": ORDER_ID})
    event = parse_stripe_event(stripe_event("refund.created", made_there))
    assert event is not None and event.refund_id is None and event.provider_refund_id == RE_ID


@pytest.mark.parametrize("status", ["pending", "failed", "canceled", "requires_action"])
def test_a_refund_event_before_the_money_moved_translates_to_nothing(status):
    assert parse_stripe_event(stripe_event("refund.updated", stripe_refund(status))) is None
