"""The Stripe payment gateway: PaymentIntents over httpx, and Stripe's webhook events translated to ours.

How Stripe's answers map onto the port, chosen so that a charge is never doubled and never silently lost:
- One PaymentIntent per payment, created and confirmed in one request whose `Idempotency-Key` is our
  payment id: a retried charge replays Stripe's first answer instead of charging again.
- 2xx: the PaymentIntent's status decides (`_result_from_intent`).
- 402 (card_error): declined, with Stripe's `decline_code` (or `code`) as the reason.
- 400/404 (invalid_request_error: unknown token, bad amount...): declined with reason `invalid_request`.
  Stripe rejected the request before executing it, so nothing was charged.
- Everything else is an unknown outcome and raises PaymentGatewayUnavailable, leaving the order to
  reconciliation: timeouts, connection errors, 5xx, 429, 409 (the same key still in flight), 400
  `idempotency_error` (a PaymentIntent for this payment may exist), 401/403 (our key is wrong: an outage of
  ours, not the buyer's card) and any status Stripe does not document for this call.
- Refunds: one Refund per refund of ours (`POST /v1/refunds` on the PaymentIntent), its `Idempotency-Key` our
  refund id, which also travels in its metadata so that Stripe's `refund.*` events name it. A 2xx is decided
  by the Refund's status (`succeeded`; `pending`/`requires_action`: pending, its event settles it;
  `failed`/`canceled`: declined); a 400/402/404 that is not an idempotency error is a refusal (declined with
  Stripe's error code: e.g. `charge_already_refunded`); anything else is an unknown outcome.
- `requires_action` cannot be completed by a server-only checkout, so charges ask Stripe to fail instead
  (`error_on_requires_action`): such a card is declined with `authentication_required` rather than left
  `processing` forever.

Neither card tokens nor Stripe's error messages (which may quote them) reach logs or exceptions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from market.application.ports import (
    ChargeRequest,
    ChargeResult,
    ProviderEvent,
    RefundRequest,
    RefundResult,
)
from market.domain.orders import PaymentGatewayUnavailable

log = logging.getLogger(__name__)

STRIPE_API = "https://api.stripe.com"
STRIPE_VERSION = "2025-03-31.basil"
"""Pinned so that request and response shapes change only when we say so. Stripe webhook endpoints have
their own API version: create ours with this one."""
DEFAULT_TIMEOUT_S = 10.0
SEARCH_LAG_S = 3600
"""Stripe's search index lags behind writes ("under a minute", up to an hour during outages), so a miss is
confirmed against the strongly consistent list of PaymentIntents created this recently."""
LIST_MAX_PAGES = 10

SUCCEEDED, DECLINED, PROCESSING = "succeeded", "declined", "processing"
_STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
"""Stripe takes only these `reason`s; ours beyond them are kept in our records only."""
_PENDING_STATUSES = frozenset({"processing", "requires_action", "requires_confirmation", "requires_capture"})
_FAILED_STATUSES = frozenset({"requires_payment_method", "canceled"})
_RANK = {SUCCEEDED: 2, PROCESSING: 1, DECLINED: 0}


class StripePaymentGateway:
    """PaymentGateway over Stripe's PaymentIntents API (cards only)."""

    name = "stripe"

    def __init__(
        self, api_key: str, *, base_url: str = STRIPE_API, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "Stripe-Version": STRIPE_VERSION},
            timeout=httpx.Timeout(timeout_s),
        )

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        response = await self._send(
            "POST",
            "/v1/payment_intents",
            request.order_id,
            content=urlencode(_charge_form(request)),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": request.payment_id,
            },
        )
        if response.is_success:
            return _result_from_intent(_json_object(response, request.order_id), request.order_id)
        error = _error_of(response)
        if response.status_code == 402:
            intent = error.get("payment_intent")
            intent_id = intent.get("id") if isinstance(intent, dict) else None
            return ChargeResult(DECLINED, intent_id, _decline_reason(error))
        _log_refusal(response, error, request.order_id)
        if response.status_code in (400, 404) and error.get("type") != "idempotency_error":
            return ChargeResult(DECLINED, None, "invalid_request")
        raise PaymentGatewayUnavailable(request.order_id)

    async def lookup(self, order_id: str, payment_id: str) -> ChargeResult | None:
        """Stripe's record of the order's PaymentIntent, found by its metadata. With several (which the
        idempotency key prevents), the most advanced one wins."""
        found = await self._get_list(
            "/v1/payment_intents/search",
            {"query": f"metadata['order_id']:'{_quoted(order_id)}'", "limit": "10"},
            order_id,
        )
        intents = [i for i in found["data"] if isinstance(i, dict)] or await self._recent_intents(order_id)
        if not intents:
            return None
        results = [_result_from_intent(intent, order_id) for intent in intents]
        return max(results, key=lambda result: _RANK[result.status])

    async def refund(self, request: RefundRequest) -> RefundResult:
        if not request.provider_payment_id:  # never charged through Stripe: nothing it could refund
            return RefundResult(DECLINED, None, "no_provider_payment")
        form = [
            ("payment_intent", request.provider_payment_id),
            ("amount", str(request.amount.cents)),
            ("metadata[order_id]", request.order_id),
            ("metadata[refund_id]", request.refund_id),
        ]
        if request.reason in _STRIPE_REFUND_REASONS:
            form.append(("reason", request.reason))
        response = await self._send(
            "POST",
            "/v1/refunds",
            request.order_id,
            content=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": request.refund_id,
            },
        )
        if response.is_success:
            refund = _json_object(response, request.order_id)
            refund_id = refund.get("id") if isinstance(refund.get("id"), str) else None
            status = refund.get("status")
            if status == "succeeded":
                return RefundResult(SUCCEEDED, refund_id)
            if status in ("pending", "requires_action"):
                return RefundResult("pending", refund_id)
            if status in ("failed", "canceled"):
                return RefundResult(DECLINED, refund_id, str(refund.get("failure_reason") or status))
            log.warning("stripe refund in an unknown state", extra={"order_id": request.order_id})
            raise PaymentGatewayUnavailable(request.order_id)
        error = _error_of(response)
        _log_refusal(response, error, request.order_id)
        if response.status_code in (400, 402, 404) and error.get("type") != "idempotency_error":
            return RefundResult(DECLINED, None, str(error.get("code") or "invalid_request"))
        raise PaymentGatewayUnavailable(request.order_id)

    async def close(self) -> None:
        await self._client.aclose()

    async def _recent_intents(self, order_id: str) -> list[dict[str, Any]]:
        """The order's PaymentIntents among those created within SEARCH_LAG_S (not yet searchable)."""
        params = {"limit": "100", "created[gte]": str(int(time.time()) - SEARCH_LAG_S)}
        for _ in range(LIST_MAX_PAGES):
            page = await self._get_list("/v1/payment_intents", params, order_id)
            intents = [i for i in page["data"] if isinstance(i, dict)]
            matches = [i for i in intents if _metadata(i).get("order_id") == order_id]
            if matches or not page.get("has_more") or not intents:
                return matches
            params["starting_after"] = str(intents[-1].get("id"))
        log.warning("stripe lookup gave up paging recent payment intents", extra={"order_id": order_id})
        raise PaymentGatewayUnavailable(order_id)

    async def _get_list(self, path: str, params: Mapping[str, str], order_id: str) -> dict[str, Any]:
        response = await self._send("GET", path, order_id, params=params)
        if not response.is_success:
            _log_refusal(response, _error_of(response), order_id)
            raise PaymentGatewayUnavailable(order_id)
        page = _json_object(response, order_id)
        if not isinstance(page.get("data"), list):
            raise PaymentGatewayUnavailable(order_id)
        return page

    async def _send(self, method: str, path: str, order_id: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            # The exception is not chained: its request would carry the form body, token included.
            log.warning(
                "stripe request failed",
                extra={"order_id": order_id, "path": path, "error": type(exc).__name__},
            )
            raise PaymentGatewayUnavailable(order_id) from None


def _charge_form(request: ChargeRequest) -> list[tuple[str, str]]:
    form = [
        ("amount", str(request.amount.cents)),
        ("currency", request.amount.currency.lower()),
        ("confirm", "true"),
        ("error_on_requires_action", "true"),
        # Naming the method type turns automatic payment methods off: no redirect-based method, so no
        # return_url is needed.
        ("payment_method_types[]", "card"),
        ("metadata[order_id]", request.order_id),
        ("metadata[payment_id]", request.payment_id),
    ]
    if request.token.startswith("tok_"):  # a legacy card token (Stripe.js createToken, `tok_visa`)
        form += [("payment_method_data[type]", "card"), ("payment_method_data[card][token]", request.token)]
    else:  # a PaymentMethod id (Stripe.js createPaymentMethod, `pm_card_visa`)
        form.append(("payment_method", request.token))
    return form


def _result_from_intent(intent: Mapping[str, Any], order_id: str) -> ChargeResult:
    status, intent_id = intent.get("status"), intent.get("id")
    intent_id = intent_id if isinstance(intent_id, str) else None
    if status == "succeeded":
        return ChargeResult(SUCCEEDED, intent_id)
    if status in _PENDING_STATUSES:
        return ChargeResult(PROCESSING, intent_id)
    if status in _FAILED_STATUSES:
        error = intent.get("last_payment_error")
        reason = _decline_reason(error) if isinstance(error, dict) else str(status)
        return ChargeResult(DECLINED, intent_id, reason)
    log.warning("stripe payment intent in an unknown state", extra={"order_id": order_id, "status": status})
    raise PaymentGatewayUnavailable(order_id)


def _decline_reason(error: Mapping[str, Any]) -> str:
    return str(error.get("decline_code") or error.get("code") or "card_declined")


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _quoted(value: str) -> str:
    """A value for a single-quoted string in Stripe's search query language."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _json_object(response: httpx.Response, order_id: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # a success we cannot read is still an unknown outcome
        log.warning("stripe answered with an unreadable body", extra={"order_id": order_id})
        raise PaymentGatewayUnavailable(order_id)
    return body


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _log_refusal(response: httpx.Response, error: Mapping[str, Any], order_id: str) -> None:
    """Status, type, code and request id only: Stripe's `message` may quote the token."""
    log.log(
        logging.ERROR if response.status_code in (401, 403) else logging.WARNING,
        "stripe refused a request",
        extra={
            "order_id": order_id,
            "status_code": response.status_code,
            "stripe_error_type": error.get("type"),
            "stripe_error_code": error.get("code"),
            "stripe_request_id": response.headers.get("request-id"),
        },
    )


# --- Webhook events -----------------------------------------------------------------------------------------

EVENT_TYPES = {
    "payment_intent.succeeded": "payment.succeeded",
    "payment_intent.payment_failed": "payment.failed",
    "charge.refunded": "payment.refunded",
    "refund.created": "payment.refunded",
    "refund.updated": "payment.refunded",
}


def _refund_event(event_id: str, refund: Mapping[str, Any], order_id: str) -> ProviderEvent | None:
    """A Refund that went through (`succeeded`): ours when its metadata names our refund, else one made at
    Stripe itself. One not yet (or never) through is not an event about money that moved."""
    if refund.get("status") != "succeeded":
        return None
    amount = refund.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidStripeEvent("the refund has no amount")
    ours = _metadata(refund).get("refund_id")
    provider_refund_id = refund.get("id")
    payment_id = refund.get("payment_intent")
    return ProviderEvent(
        id=event_id,
        type="payment.refunded",
        order_id=order_id,
        provider_payment_id=payment_id if isinstance(payment_id, str) else None,
        refund_id=ours if isinstance(ours, str) and ours else None,
        provider_refund_id=provider_refund_id if isinstance(provider_refund_id, str) else None,
        amount_cents=amount,
    )


class InvalidStripeEvent(ValueError):
    """The body is not a Stripe event at all."""


def parse_stripe_event(body: bytes) -> ProviderEvent | None:
    """Our provider event for a (verified) Stripe event body, or None when it is not about one of our
    orders: another event type, an object without our `order_id` metadata, or a partial refund (the
    order stays paid). The payment id is the PaymentIntent's id, as `charge()` reports it."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers invalid UTF-8 too
        raise InvalidStripeEvent("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidStripeEvent("the body has no event id")
    our_type = EVENT_TYPES.get(str(event.get("type")))
    if our_type is None:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise InvalidStripeEvent("the event has no data.object")
    order_id = _metadata(obj).get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return None
    reason = None
    if str(event.get("type")).startswith("refund."):
        return _refund_event(event["id"], obj, order_id)
    if our_type == "payment.refunded":
        if obj.get("refunded") is not True:
            return None  # a partial refund: its `refund.*` event tells its amount
        payment_id = obj.get("payment_intent")
    else:
        payment_id = obj.get("id")
        error = obj.get("last_payment_error")
        if our_type == "payment.failed":
            reason = _decline_reason(error) if isinstance(error, dict) else "card_declined"
    return ProviderEvent(
        id=event["id"],
        type=our_type,
        order_id=order_id,
        provider_payment_id=payment_id if isinstance(payment_id, str) else None,
        reason=reason,
    )
