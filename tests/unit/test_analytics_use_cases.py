"""Analytics events are written in the same unit of work as the change they describe: what the analytics
log keeps is exactly what was published after commit, and work that rolls back leaves no event."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from market.application.analytics import roll_up_events
from market.application.catalog import browse_items, view_item
from market.domain.catalog import ItemFilter
from market.domain.events import CartChanged, CheckoutStarted, ItemViewed, OrderPaid, PaymentAttempted
from market.domain.orders import InsufficientStock, PaymentDeclined, PaymentGatewayUnavailable
from tests.support.fakes import FakeClock
from tests.support.world import World


@pytest.fixture
def world() -> World:
    return World().stock_shelves()


def kinds(events) -> list[str]:
    return [type(e).__name__ + (f":{e.outcome}" if isinstance(e, PaymentAttempted) else "") for e in events]


async def paid(world: World) -> None:
    await world.put("mug", 2)
    await world.checkout("tok_visa")


async def declined(world: World) -> None:
    await world.put("mug", 1)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")


async def gateway_down_then_reconciled(world: World) -> None:
    await world.put("mug", 1)
    with pytest.raises(PaymentGatewayUnavailable):
        await world.checkout("tok_gatewayTimeout")  # charged, though the call timed out
    await world.reconcile()


async def asynchronous_then_webhook_twice(world: World) -> None:
    await world.put("mug", 1)
    order = await world.checkout("tok_processing")
    await world.event("evt_1", "payment.succeeded", order.id)
    await world.event("evt_1", "payment.succeeded", order.id)  # a duplicate: rolled back


async def refunded(world: World) -> None:
    await world.put("hat", 1)
    order = await world.checkout("tok_visa")
    await world.event("evt_r", "payment.refunded", order.id)


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (paid, ["CartChanged", "CheckoutStarted", "PaymentAttempted:succeeded", "OrderPaid"]),
        (declined, ["CartChanged", "CheckoutStarted", "PaymentAttempted:declined"]),
        (
            gateway_down_then_reconciled,
            ["CartChanged", "CheckoutStarted", "PaymentAttempted:error", "OrderPaid"],
        ),
        (
            asynchronous_then_webhook_twice,
            ["CartChanged", "CheckoutStarted", "PaymentAttempted:succeeded", "OrderPaid"],
        ),
        (
            refunded,
            ["CartChanged", "CheckoutStarted", "PaymentAttempted:succeeded", "OrderPaid", "OrderRefunded"],
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
async def test_the_analytics_log_keeps_exactly_what_was_published(world, scenario, expected):
    await scenario(world)
    assert kinds(world.state.analytics) == expected
    assert world.state.analytics == world.events.published


async def test_a_checkout_that_rolls_back_leaves_no_checkout_event(world):
    await world.put("mug", 2)
    world.store.items["mug"] = dataclasses.replace(world.store.items["mug"], stock=1)
    with pytest.raises(InsufficientStock):
        await world.checkout("tok_visa")
    assert kinds(world.state.analytics) == ["CartChanged"]
    assert not any(isinstance(e, CheckoutStarted | OrderPaid) for e in world.state.analytics)


async def test_a_cart_change_records_its_direction_and_an_unchanged_quantity_records_nothing(world):
    await world.put("mug", 3)
    await world.put("mug", 3)
    await world.put("mug", 1)
    assert world.state.analytics == [CartChanged("mug", "add", 3), CartChanged("mug", "remove", -2)]


async def test_views_and_first_page_searches_are_recorded(world):
    store = world.store
    await view_item("mug", repos=store.repos, clock=world.clock, events=world.events)
    page = await browse_items(
        ItemFilter(query="mug"), 1, None, repos=store.repos, clock=world.clock, events=world.events
    )
    await browse_items(
        ItemFilter(query="mug"),
        1,
        page.next_cursor,
        repos=store.repos,
        clock=world.clock,
        events=world.events,
    )
    await browse_items(ItemFilter(), 20, None, repos=store.repos, clock=world.clock, events=world.events)
    assert kinds(store.commerce.analytics) == ["ItemViewed", "SearchPerformed"]
    assert store.commerce.analytics[0] == ItemViewed("mug", store.items["mug"].seller_id)


async def test_the_rollup_pass_leaves_the_day_of_the_retention_cut_off_to_the_raw_events():
    class Reports:
        calls: list = []

        async def roll_up(self, now, kept_from=None):
            self.calls.append((now, kept_from))
            return 2

    clock, reports = FakeClock(step=timedelta(0)), Reports()
    assert await roll_up_events(timedelta(days=400), reports=reports, clock=clock) == 2
    assert reports.calls == [(clock.now(), clock.now() - timedelta(days=400))]
