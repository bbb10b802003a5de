"""The protocols the application owns, with in-memory fakes: events leave a unit of work only once it has
committed; checkout runs once per idempotency key; a provider delivery is authenticated, read, applied and
counted; a bearer token names its user until revoked."""

from __future__ import annotations

from functools import partial

import pytest

from market.application.accounts import sign_out_everywhere, user_of_token
from market.application.checkout import CheckoutAnswer, PaymentMethodInput, idempotent_checkout
from market.application.ports import IdempotentReplay, InvalidProviderSignature, ProviderEvent
from market.application.provider_events import receive_provider_event
from market.domain.errors import (
    DomainError,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    InvalidProviderEvent,
)
from market.domain.events import CartChanged, ItemListed, OrderPaid, WebhookReceived, WebhookRejected
from market.domain.money import Money
from market.domain.orders import CheckoutInProgress, Order, OrderStatus, PaymentDeclined
from tests.support.factories import T0, item, new_order
from tests.support.fakes import FakeClock, FakeEventPublisher, FakeIdempotencyStore, FakeStore
from tests.support.world import BUYER, World

# --- the unit of work publishes what it collected, after commit -------------------------------------------


async def test_collected_events_are_published_once_the_work_commits_not_before():
    events = FakeEventPublisher()
    store = FakeStore(events)
    async with store.uow() as work:
        await work.collect([CartChanged("mug", "add", 1)], T0)
        await work.collect([ItemListed("mug", "seller-1")], T0)
        assert events.published == []
        await work.commit()
        assert events.published == [CartChanged("mug", "add", 1), ItemListed("mug", "seller-1")]
    assert store.commerce.analytics == [CartChanged("mug", "add", 1), ItemListed("mug", "seller-1")]


async def test_a_unit_of_work_left_without_commit_publishes_and_records_nothing():
    events = FakeEventPublisher()
    store = FakeStore(events)
    async with store.uow() as work:
        await work.collect([OrderPaid("o-1", Money(100, "EUR"))], T0)
    with pytest.raises(RuntimeError):
        async with store.uow() as work:
            await work.collect([OrderPaid("o-2", Money(100, "EUR"))], T0)
            raise RuntimeError("the work fails half-way")
    assert events.published == []
    assert store.commerce.analytics == []


async def test_a_declined_checkout_publishes_only_what_its_committed_steps_collected():
    world = World().stock_shelves()
    await world.put("mug", 1)
    with pytest.raises(PaymentDeclined):
        await world.checkout("tok_chargeDeclined")
    # Every published event was recorded by a committed unit of work, in the same order.
    assert world.events.published == world.state.analytics


# --- checkout once per idempotency key --------------------------------------------------------------------


class Checkout:
    """`idempotent_checkout` bound to fakes, over a stand-in for the checkout that answers as told."""

    def __init__(self) -> None:
        self.store = FakeIdempotencyStore()
        self.calls = 0
        self.outcome: Order | Exception = Exception("not set")

    async def place_order(self, buyer, method) -> Order:
        self.calls += 1
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def __call__(self, key: str | None, request_hash: str = "h1") -> CheckoutAnswer:
        return await idempotent_checkout(
            BUYER,
            key,
            request_hash,
            PaymentMethodInput("card", "tok_visa"),
            respond,
            place_order=self.place_order,
            idempotency=self.store,
            clock=FakeClock(),
        )


def respond(outcome: Order | DomainError) -> IdempotentReplay:
    if isinstance(outcome, DomainError):
        return IdempotentReplay(402, f"problem:{type(outcome).__name__}".encode())
    return IdempotentReplay(201, f"order:{outcome.id}".encode())


def _order() -> Order:
    return new_order(BUYER, [(item(), 1)], status=OrderStatus.PAID)


async def test_a_retry_with_the_same_key_replays_the_first_answer_without_a_second_order():
    checkout = Checkout()
    checkout.outcome = _order()
    first = await checkout("key-1")
    again = await checkout("key-1")
    assert first == CheckoutAnswer(201, first.body, replayed=False)
    assert again == CheckoutAnswer(201, first.body, replayed=True)
    assert checkout.calls == 1


async def test_a_domain_error_is_the_keys_answer_and_is_replayed_too():
    checkout = Checkout()
    checkout.outcome = PaymentDeclined("o-1", "card_declined")
    first = await checkout("key-1")
    again = await checkout("key-1")
    assert (first.status, first.body, again.replayed) == (402, b"problem:PaymentDeclined", True)
    assert checkout.calls == 1


async def test_the_same_key_with_another_body_or_still_running_is_refused():
    checkout = Checkout()
    checkout.outcome = _order()
    await checkout("key-1")
    with pytest.raises(IdempotencyKeyReused):
        await checkout("key-1", request_hash="h2")
    await checkout.store.begin(BUYER.id, "key-2", "h1", FakeClock().now())  # another request holds it
    with pytest.raises(IdempotentRequestInProgress):
        await checkout("key-2")
    assert checkout.calls == 1


async def test_no_key_is_refused_before_anything_happens():
    checkout = Checkout()
    with pytest.raises(IdempotencyKeyRequired):
        await checkout(None)
    assert checkout.calls == 0 and checkout.store.keys == {}


@pytest.mark.parametrize("failure", [CheckoutInProgress(), RuntimeError("the database went away")])
async def test_a_transient_or_unexpected_failure_forgets_the_key_so_a_retry_runs_again(failure):
    checkout = Checkout()
    checkout.outcome = failure
    with pytest.raises(type(failure)):
        await checkout("key-1")
    assert checkout.store.keys == {}
    checkout.outcome = _order()
    assert (await checkout("key-1")).replayed is False
    assert checkout.calls == 2


# --- provider event intake ---------------------------------------------------------------------------------


class FakeProviderEvents:
    """Signed when the signature is `good`; the body is the event's id, `unknown` for an event not about us,
    `garbled` for one not understood."""

    def verify(self, body: bytes, signature: str | None) -> None:
        if signature != "good":
            raise InvalidProviderSignature("no match", "bad_signature")

    def parse(self, body: bytes) -> ProviderEvent | None:
        if body == b"garbled":
            raise InvalidProviderEvent("The event is not one this endpoint understands.")
        if body == b"unknown":
            return None
        return ProviderEvent(body.decode(), "payment.succeeded", "o-1")


class Intake:
    def __init__(self) -> None:
        self.events = FakeEventPublisher()
        self.applied: list[ProviderEvent] = []
        self.fail = False
        self.receive = partial(
            receive_provider_event, source=FakeProviderEvents(), apply=self.apply, events=self.events
        )

    async def apply(self, event: ProviderEvent) -> str:
        if self.fail:
            raise RuntimeError("the database went away")
        self.applied.append(event)
        return "applied"


async def test_an_authentic_event_is_applied_and_counted_a_success():
    intake = Intake()
    assert await intake.receive(b"evt_1", "good") == "applied"
    assert [e.id for e in intake.applied] == ["evt_1"]
    assert intake.events.published == [WebhookReceived("success")]


async def test_an_authentic_event_not_about_our_orders_is_acknowledged_as_ignored():
    intake = Intake()
    assert await intake.receive(b"unknown", "good") == "ignored"
    assert intake.applied == []
    assert intake.events.published == [WebhookReceived("success")]


async def test_a_bad_signature_is_a_rejection_by_reason_and_changes_nothing():
    intake = Intake()
    with pytest.raises(InvalidProviderEvent, match="signature is not valid"):
        await intake.receive(b"evt_1", "forged")
    assert intake.applied == []
    assert intake.events.published == [WebhookRejected("bad_signature")]


@pytest.mark.parametrize(("body", "fail"), [(b"garbled", False), (b"evt_1", True)])
async def test_an_authentic_event_we_fail_to_handle_is_a_failed_delivery(body, fail):
    intake = Intake()
    intake.fail = fail
    with pytest.raises((InvalidProviderEvent, RuntimeError)):
        await intake.receive(body, "good")
    assert intake.events.published == [WebhookReceived("failure")]


# --- sign-in by token -----------------------------------------------------------------------------------------


async def test_a_token_names_its_user_until_the_user_signs_out_everywhere():
    world = World()
    user = await world.register()
    token = await world.token("ada@example.com", "correct horse battery")
    of_token = partial(user_of_token, tokens=world.tokens, repos=world.store.repos)
    assert (await of_token(token.token)).id == user.id
    assert await of_token("forged") is None
    await sign_out_everywhere(user, uow=world.store.uow)
    assert await of_token(token.token) is None
