"""Domain events as span events on the current span, so a trace shows what the business saw happen."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace

from market.domain import events
from market.telemetry import names

_SPAN_EVENT_NAMES: dict[type[events.Event], str] = {
    events.ItemViewed: names.EVENT_ITEM_VIEWED,
    events.SearchPerformed: names.EVENT_SEARCH_PERFORMED,
    events.ItemListed: names.EVENT_ITEM_LISTED,
    events.UserRegistered: names.EVENT_USER_REGISTERED,
}


class OtelEventPublisher:
    def publish(self, published: Sequence[events.Event]) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for event in published:
            name = _SPAN_EVENT_NAMES.get(type(event))
            if name is None:
                continue
            if isinstance(event, events.SearchPerformed):
                # The query text is user input: its length and result count are enough on a span.
                span.add_event(name, {"market.search.result_count": event.result_count})
            elif isinstance(event, events.ItemViewed):
                span.add_event(name, {"market.item.id": event.item_id})
            else:
                span.add_event(name)
