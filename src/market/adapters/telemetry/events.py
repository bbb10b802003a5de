"""Domain events to telemetry: business metrics, and span events on the current span so a trace shows
what the business saw happen. Attributes are bounded and free of personal data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from market.domain import events
from market.telemetry import names
from market.telemetry.metrics import Instruments

log = logging.getLogger(__name__)


class OtelEventPublisher:
    def __init__(self, instruments: Instruments | None = None) -> None:
        self._instruments = instruments

    def publish(self, published: Sequence[events.Event]) -> None:
        span = trace.get_current_span()
        recording = span.is_recording()
        for event in published:
            name, attributes = self._record(event)
            if recording and name:
                span.add_event(name, attributes)
                if isinstance(event, events.CheckoutStarted):
                    # The checkout's span (current here) carries the order's figures whatever its outcome: a
                    # declined or timed-out checkout ends in an error that has only the order's id.
                    span.set_attributes(attributes)

    def _record(self, event: events.Event) -> tuple[str | None, dict[str, Any]]:
        """Update the metrics for one event; return its span event (name and attributes)."""
        m = self._instruments
        match event:
            case events.ItemViewed():
                if m:
                    m.item_views.add(1)
                return names.EVENT_ITEM_VIEWED, {names.ITEM_ID: event.item_id}
            case events.SearchPerformed():
                outcome = "results" if event.result_count else "no_results"
                if m:
                    m.search_queries.add(1, {names.SEARCH_OUTCOME: outcome})
                # The query text is user input: the outcome and count are enough on a span.
                return names.EVENT_SEARCH_PERFORMED, {
                    names.SEARCH_OUTCOME: outcome,
                    names.SEARCH_RESULT_COUNT: event.result_count,
                }
            case events.CartChanged():
                if m:
                    m.cart_changes.add(1, {names.CART_ACTION: event.action})
                name = names.EVENT_CART_ITEM_ADDED if event.action == "add" else names.EVENT_CART_ITEM_REMOVED
                return name, {
                    names.ITEM_ID: event.item_id,
                    names.CART_QUANTITY_DELTA: event.quantity_delta,
                }
            case events.CheckoutStarted():
                if m:
                    m.checkout_started.add(1)
                return names.EVENT_CHECKOUT_STARTED, {
                    names.ORDER_ID: event.order_id,
                    names.ORDER_TOTAL_CENTS: event.total.cents,
                    names.ORDER_CURRENCY: event.total.currency,
                    names.CART_LINE_COUNT: event.line_count,
                }
            case events.PaymentAttempted():
                if m:
                    m.payment_attempts.add(
                        1, {names.PAYMENT_OUTCOME: event.outcome, names.PAYMENT_METHOD: event.method}
                    )
                    m.payment_amount.record(
                        event.amount.cents,
                        {names.PAYMENT_OUTCOME: event.outcome, names.ORDER_CURRENCY: event.amount.currency},
                    )
                return names.EVENT_PAYMENT_ATTEMPTED, {
                    names.ORDER_ID: event.order_id,
                    names.PAYMENT_OUTCOME: event.outcome,
                    names.PAYMENT_METHOD: event.method,
                }
            case events.OrderPaid():
                if m:
                    m.orders_completed.add(1, {names.ORDER_CURRENCY: event.total.currency})
                return names.EVENT_ORDER_PAID, {names.ORDER_ID: event.order_id}
            case events.PaymentCapturedAfterFailure():
                if m:
                    m.payment_captured_after_failure.add(1)
                # Ids only: the buyer is found from the order. Not a Sentry event: like a mismatched provider
                # event, it is an authentic outcome we handled (nothing of ours failed), left for a person through
                # its metric and this line.
                log.warning(
                    "the provider took the money for an order already payment_failed: refund or fulfil it",
                    extra={
                        "order_id": event.order_id,
                        "payment_id": event.payment_id,
                        "provider_event_id": event.event_id,
                    },
                )
                return names.EVENT_PAYMENT_CAPTURED_AFTER_FAILURE, {
                    names.ORDER_ID: event.order_id,
                    names.ORDER_TOTAL_CENTS: event.amount.cents,
                    names.ORDER_CURRENCY: event.amount.currency,
                }
            case events.RefundOfFailedPayment():
                # Ids only, as above. No counter nor alert: the buyer has the money back whichever way it
                # happened (see the event), so a person checks it when they can.
                log.warning(
                    "the provider refunded the payment of an order already payment_failed: nothing applied;"
                    " check the charge at the provider",
                    extra={
                        "order_id": event.order_id,
                        "payment_id": event.payment_id,
                        "provider_event_id": event.event_id,
                    },
                )
                return None, {}
            case events.OrderRefunded():
                if m:
                    m.refunds.add(1, {names.REFUND_REASON: event.reason})
                return names.EVENT_ORDER_REFUNDED, {
                    names.ORDER_ID: event.order_id,
                    names.REFUND_AMOUNT_CENTS: event.amount.cents,
                    names.ORDER_CURRENCY: event.amount.currency,
                    names.REFUND_REASON: event.reason,
                }
            case events.WebhookReceived():
                if m:
                    m.webhook_deliveries.add(
                        1, {names.WEBHOOK_DIRECTION: "inbound", names.WEBHOOK_OUTCOME: event.outcome}
                    )
                return None, {}
            case events.WebhookRejected():
                if m:
                    m.webhook_rejected.add(1, {names.WEBHOOK_REJECTION_REASON: event.reason})
                return names.EVENT_WEBHOOK_REJECTED, {names.WEBHOOK_REJECTION_REASON: event.reason}
            case events.ItemListed():
                return names.EVENT_ITEM_LISTED, {names.ITEM_ID: event.item_id}
            case events.UserRegistered():
                return names.EVENT_USER_REGISTERED, {names.USER_ROLE: event.role}
        return None, {}
