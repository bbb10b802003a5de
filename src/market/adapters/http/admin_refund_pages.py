"""The refund form of an order's admin page (`POST /admin/orders/{order_id}/refunds`).

It calls the use case `POST /api/v1/admin/orders/{order_id}/refunds` calls (`idempotent_refund`), with the
idempotency key the page put in a hidden field when it was rendered (a fresh one each time): a double submit of
one rendered form is one refund, its second answer the first one's replay. Same sign-in, CSRF and headers as
every admin page (admin_pages.py)."""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import partial
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from market.application.checkout import GetOrder
from market.application.refunds import IdempotentRefund
from market.domain.errors import DomainError
from market.domain.money import MAX_CENTS
from market.domain.orders import PAID_STATES, OrderStatus
from market.domain.refunds import ADMIN_REASONS, RefundReason

from .admin_orders import RefundBody, _respond
from .admin_pages import Outcome, order_page_response
from .dashboard import checked_form
from .dashboard_sessions import admin_session
from .orders import MAX_IDEMPOTENCY_KEY

REASONS = tuple(reason.value for reason in ADMIN_REASONS)
REFUNDABLE = frozenset(PAID_STATES - {OrderStatus.REFUNDED})
_DIGITS = re.compile(r"^[0-9]{1,13}$")
_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}$")
"""An idempotency key as a header could carry it: printable ASCII (the page makes 32 hex digits)."""


def refund_form_context() -> dict[str, Any]:
    """What the order page's refund form needs: the reasons, and a fresh idempotency key for this render."""
    return {
        "refund_reasons": REASONS,
        "refundable": {status.value for status in REFUNDABLE},
        "refund_key": uuid.uuid4().hex,
        "max_cents": MAX_CENTS,
    }


def _amount(raw: str) -> int | None:
    """The typed amount in minor units (empty: None, all that is left); ValueError when it is not one."""
    if not raw:
        return None
    if not _DIGITS.match(raw) or not 1 <= int(raw) <= MAX_CENTS:
        raise ValueError(raw)
    return int(raw)


@post("/orders/{order_id:str}/refunds")
async def refund_form(
    request: Request[Any, Any, Any],
    order_id: FromPath[str],
    get_order: NamedDependency[GetOrder],
    idempotent_refund: NamedDependency[IdempotentRefund],
) -> Response[Any]:
    """Refund `amount_cents` (empty: all that is left) of the order, with a reason; the order's page again,
    saying what was refunded or why not (the problem's detail and status)."""
    user, token = await admin_session(request)
    form = await checked_form(request, token)
    key = str(form.get("idempotency_key") or "").strip()
    reason = str(form.get("reason") or "")
    raw_amount = str(form.get("amount_cents") or "").strip()[:64]
    try:
        amount = _amount(raw_amount)
    except ValueError:
        amount = None
        outcome: Outcome | None = Outcome(
            error=f"The amount is a whole number of minor units, from 1 to {MAX_CENTS} (or empty: all).",
            status=400,
        )
    else:
        outcome = None
    if outcome is None and reason not in REASONS:
        outcome = Outcome(error=f"Pick a reason: {', '.join(REASONS)}.", status=400)
    if outcome is None and not _KEY.match(key):
        outcome = Outcome(
            error="The form's idempotency key is missing or not valid; reload the order's page.", status=400
        )
    if outcome is None:
        body = RefundBody(reason=reason, amount_cents=amount)  # type: ignore[arg-type]
        try:
            answer = await idempotent_refund(
                user,
                order_id,
                key,
                hashlib.sha256(msgspec.json.encode(body)).hexdigest(),
                amount,
                RefundReason(reason),
                partial(_respond, request),
            )
        except DomainError as exc:  # the provider did not answer (pending), or the key is still in use
            outcome = Outcome.of(exc)
        else:
            outcome = _outcome(answer.status, answer.body, answer.replayed)
    return await order_page_response(request, order_id, get_order, outcome)


def _outcome(status: int, body: bytes, replayed: bool) -> Outcome:
    answer = msgspec.json.decode(body)
    if status >= 400:
        return Outcome(error=str(answer.get("detail") or "The refund was refused."), status=status)
    again = " (this form was sent before: that refund's answer)" if replayed else ""
    return Outcome(
        notice=f"Refund {answer['id']}: {answer['amount_cents']} {answer['currency']} minor units, "
        f"{answer['status']}{again}."
    )
