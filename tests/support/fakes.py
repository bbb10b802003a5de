"""In-memory doubles of the ports (Fake<Port>), for unit tests of use cases."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import heapq
import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from market.application.ports import (
    AccessToken,
    ChargeRequest,
    ChargeResult,
    IdempotentReplay,
    Page,
    RefundRequest,
    RefundResult,
    TokenClaims,
)
from market.domain.admin import AuditEntry, AuditFilter, UserFilter
from market.domain.catalog import Item, ItemFilter, ItemStatus
from market.domain.errors import EmailAlreadyRegistered, InvalidCursor, RateLimited
from market.domain.events import Event
from market.domain.money import Money
from market.domain.orders import RESERVING, Cart, CartLine, Order, OrderFilter, PaymentGatewayUnavailable
from market.domain.refunds import Refund, RefundStatus
from market.domain.sessions import ClientEvent, RequestEntry, SessionFilter, SessionSummary, Timeline
from market.domain.users import Role, User, UserStatus
from market.domain.webhooks import DeliveryRecord, DeliveryStatus


class FakeUserRepository:
    def __init__(self, store: dict[str, User]) -> None:
        self.store = store

    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self.store.values()):
            raise EmailAlreadyRegistered()
        self.store[user.id] = user

    async def get(self, user_id: str, *, for_update: bool = False) -> User | None:
        return self.store.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self.store.values() if u.email == email), None)

    async def list_all(self) -> Sequence[User]:
        return sorted(self.store.values(), key=lambda u: (u.created_at, u.id))

    async def replace_password(
        self, user_id: str, password_hash: str, *, token_version: int | None = None
    ) -> bool:
        return self._bump_token_version(user_id, token_version, password_hash=password_hash)

    async def revoke_tokens(self, user_id: str, *, token_version: int | None = None) -> bool:
        return self._bump_token_version(user_id, token_version)

    def _bump_token_version(self, user_id: str, token_version: int | None, **changes: Any) -> bool:
        user = self.store.get(user_id)
        if user is None or token_version not in (None, user.token_version):
            return False
        self._change(user_id, token_version=user.token_version + 1, **changes)
        return True

    async def set_status(self, user_id: str, status: UserStatus) -> None:
        self._change(user_id, status=status)

    async def record_login(self, user_id: str, at: datetime) -> None:
        self._change(user_id, last_login_at=at)

    def _change(self, user_id: str, **changes: Any) -> None:
        if user_id in self.store:  # like an UPDATE: an unknown id changes nothing
            self.store[user_id] = dataclasses.replace(self.store[user_id], **changes)


class FakeItemRepository:
    def __init__(self, store: dict[str, Item], sellers: Mapping[str, User] | None = None) -> None:
        self.store = store
        self.sellers = sellers if sellers is not None else {}

    async def add(self, item: Item) -> None:
        self.store[item.id] = item

    async def get(self, item_id: str, *, for_update: bool = False) -> Item | None:
        return self.store.get(item_id)

    async def get_on_sale(self, item_id: str) -> Item | None:
        item = self.store.get(item_id)
        return item if item is not None and self.on_sale(item) else None

    def on_sale(self, item: Item) -> bool:
        """Active, and its seller not disabled (a seller missing from `sellers` counts as enabled)."""
        seller = self.sellers.get(item.seller_id)
        return item.status is ItemStatus.ACTIVE and (seller is None or seller.status is UserStatus.ACTIVE)

    async def update(self, item: Item) -> None:
        self.store[item.id] = item

    async def browse(self, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
        matches = [
            i
            for i in sorted(self.store.values(), key=lambda i: (i.created_at, i.id), reverse=True)
            if i.status is item_filter.status
            and (item_filter.status is not ItemStatus.ACTIVE or self.on_sale(i))
            and (item_filter.query is None or item_filter.query in f"{i.title} {i.description}".lower())
            and (item_filter.category is None or i.category == item_filter.category)
            and (item_filter.seller_id is None or i.seller_id == item_filter.seller_id)
            and (item_filter.min_price_cents is None or i.price.cents >= item_filter.min_price_cents)
            and (item_filter.max_price_cents is None or i.price.cents <= item_filter.max_price_cents)
        ]
        try:
            start = int(cursor) if cursor else 0
        except ValueError:
            raise InvalidCursor() from None
        page = matches[start : start + limit]
        more = start + limit < len(matches)
        return Page(items=page, next_cursor=str(start + limit) if more else None)


class FakeUnitOfWork:
    """Stages writes in copies; only `commit()` makes them visible in the shared stores."""

    def __init__(
        self,
        users: dict[str, User],
        items: dict[str, Item],
        commerce: FakeCommerceState | None = None,
        events: FakeEventPublisher | None = None,
    ) -> None:
        self._users, self._items = users, items
        self._commerce = commerce if commerce is not None else FakeCommerceState()
        self._publisher = events
        self.committed = False

    async def __aenter__(self) -> Self:
        self.users = FakeUserRepository(dict(self._users))
        self.items = FakeItemRepository(dict(self._items), self.users.store)
        # Commerce state is staged as a deep copy too: stock lives on the staged items, so a rolled-back
        # checkout leaves neither a reservation, an order nor a cart claim behind.
        self._staged = copy.deepcopy(self._commerce)
        self.carts = FakeCartRepository(self._staged, self.items)
        self.stock = FakeStockRepository(self.items)
        self.orders = FakeOrderRepository(self._staged)
        self.refunds = FakeRefundRepository(self._staged)
        self.payment_events = FakePaymentEventLog(self._staged)
        self.outbox = FakeWebhookOutbox(self._staged)
        self.analytics = FakeAnalyticsLog(self._staged.analytics)
        self._collected: list[Event] = []
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._collected = []

    async def collect(self, events: Sequence[Event], now: datetime) -> None:
        await self.analytics.record(events, now)
        self._collected.extend(events)

    async def commit(self) -> None:
        self._users.clear()
        self._users.update(self.users.store)
        self._items.clear()
        self._items.update(self.items.store)
        self._commerce.replace_with(self._staged)
        self.committed = True
        collected, self._collected = self._collected, []
        if collected and self._publisher is not None:
            self._publisher.publish(collected)


class FakeStore:
    """The shared state behind the fakes, with factories shaped like the real ports."""

    def __init__(self, events: FakeEventPublisher | None = None) -> None:
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}
        self.commerce = FakeCommerceState()
        """Carts, claims, orders, provider events and queued webhooks (read it through its fields)."""
        self.events = events
        """Where units of work publish the events they collected, once committed (None: nowhere)."""

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.users, self.items, self.commerce, self.events)

    @property
    def repos(self) -> Any:
        store = self

        class Repos:
            users = FakeUserRepository(store.users)
            items = FakeItemRepository(store.items, store.users)
            analytics = FakeAnalyticsLog(store.commerce.analytics)

        return Repos()


class FakePasswordHasher:
    async def hash(self, password: str) -> str:
        return "hashed:" + password

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == "hashed:" + password


class FakeTokenService:
    """Tokens are readable `token-for:<user id>:v<token version>` strings."""

    def issue(self, user: User) -> AccessToken:
        return AccessToken(token=f"token-for:{user.id}:v{user.token_version}", expires_in=3600)

    def read(self, token: str) -> TokenClaims | None:
        user_id, _, version = token.removeprefix("token-for:").rpartition(":v")
        if not token.startswith("token-for:") or not version.isdigit():
            return None
        return TokenClaims(user_id=user_id, token_version=int(version))


class FakeEventPublisher:
    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.published.extend(events)


class FakeAnalyticsLog:
    """Keeps the events in the list it is given (in a unit of work: the staged copy, gone on rollback)."""

    def __init__(self, recorded: list[Event]) -> None:
        self.recorded = recorded

    async def record(self, events: Sequence[Event], now: datetime) -> None:
        self.recorded.extend(events)


class FakeClock:
    """The one test clock. Time moves by `step` at each reading (a second by default, so successive events
    are ordered; `step=timedelta(0)` holds it still), by `advance`, and by `sleep`.

    `sleep` is virtual and shared by `workers` concurrent sleepers: time stands still while any of them is
    busy and jumps to the earliest wake-up once all of them sleep, so every worker sees the instants a real
    clock would give it however slow the machine. Past `until`, time stops: `stopped` is set and the sleepers
    never wake (the test cancels them)."""

    def __init__(
        self,
        start: datetime | None = None,
        *,
        step: timedelta = timedelta(seconds=1),
        workers: int = 1,
        until: datetime | None = None,
    ) -> None:
        self.current = start or datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
        self.step = step
        self.workers = workers
        self.until = until
        self.stopped = asyncio.Event()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        """The time, after moving it by `step`."""
        self.current += self.step
        return self.current

    def __call__(self) -> datetime:
        """`now()`, for code that takes the clock as a function."""
        return self.now()

    def advance(self, delta: timedelta | float) -> None:
        """Move the time forward by `delta` (a timedelta, or seconds)."""
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of virtual time (see the class docstring)."""
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.current + timedelta(seconds=seconds), next(self._order), future))
        if len(self._sleepers) >= self.workers:
            if self.until is not None and self._sleepers[0][0] > self.until:
                self.stopped.set()
                await future  # forever: the test cancels the workers
            wake, _, first = heapq.heappop(self._sleepers)
            self.current = max(self.current, wake)
            first.set_result(None)
        await future


class FakeIdGenerator:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._counter):012d}"


# --- Commerce ---------------------------------------------------------------------------------------------

CHECKOUT_CLAIM_TIMEOUT = timedelta(minutes=15)
IDEMPOTENCY_TAKEOVER_AFTER = timedelta(minutes=5)


@dataclasses.dataclass
class FakeCommerceState:
    """Everything the commerce ports persist, in one place, so a unit of work can stage a copy of it."""

    cart_lines: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """buyer id -> item id -> quantity, in the order the lines were added."""
    claims: dict[str, tuple[str, datetime]] = dataclasses.field(default_factory=dict)
    """buyer id -> (order id, since when) of the checkout holding the cart."""
    orders: dict[str, Order] = dataclasses.field(default_factory=dict)
    payment_events: dict[str, tuple[str, str | None, str]] = dataclasses.field(default_factory=dict)
    """event id -> (type, order id, outcome)."""
    webhook_sellers: set[str] = dataclasses.field(default_factory=set)
    """Sellers with an enabled `order.paid` endpoint."""
    webhook_deliveries: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """(seller id, order id) of every queued `order.paid` delivery."""
    analytics: list[Event] = dataclasses.field(default_factory=list)
    """Every event handed to the analytics log, committed ones only."""
    refunds: dict[str, Refund] = dataclasses.field(default_factory=dict)
    """Every refund by id, in the order they were added."""
    refund_deliveries: list[tuple[str, str, str, int]] = dataclasses.field(default_factory=list)
    """(seller id, order id, refund id, the seller's share in cents) of every queued `order.refunded`
    delivery."""

    def replace_with(self, other: FakeCommerceState) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(other, f.name))


class FakeCartRepository:
    def __init__(self, state: FakeCommerceState, items: FakeItemRepository) -> None:
        self.state, self.items = state, items

    async def get(self, buyer_id: str) -> Cart:
        lines = []
        for item_id, quantity in self.state.cart_lines.get(buyer_id, {}).items():
            i = self.items.store[item_id]
            available = self.items.on_sale(i)
            lines.append(CartLine(i.id, i.title, quantity, i.price, i.seller_id, i.stock, available))
        return Cart(buyer_id, tuple(lines))

    async def hold(self, buyer_id: str, now: datetime) -> None:
        pass  # one task at a time: nothing to lock

    async def set_quantity(self, buyer_id: str, item_id: str, quantity: int, now: datetime) -> None:
        lines = self.state.cart_lines.setdefault(buyer_id, {})
        if quantity == 0:
            lines.pop(item_id, None)
        else:
            lines[item_id] = quantity

    async def remove_ordered_items(self, buyer_id: str, order_id: str, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self.state.cart_lines.get(buyer_id, {}).pop(item_id, None)
        await self.release_checkout(buyer_id, order_id)

    async def claim_for_checkout(self, buyer_id: str, order_id: str, now: datetime) -> Cart | None:
        held = self.state.claims.get(buyer_id)
        if held is not None and held[1] >= now - CHECKOUT_CLAIM_TIMEOUT:
            return None
        self.state.claims[buyer_id] = (order_id, now)
        return await self.get(buyer_id)

    async def release_checkout(self, buyer_id: str, order_id: str) -> None:
        held = self.state.claims.get(buyer_id)
        if held is not None and held[0] == order_id:
            del self.state.claims[buyer_id]


class FakeStockRepository:
    def __init__(self, items: FakeItemRepository) -> None:
        self.catalog = items
        self.items = items.store

    async def reserve(self, item_id: str, quantity: int) -> bool:
        item = self.items.get(item_id)
        if item is None or not self.catalog.on_sale(item) or item.stock < quantity:
            return False
        self.items[item_id] = dataclasses.replace(item, stock=item.stock - quantity)
        return True

    async def reserve_all(self, wanted: Sequence[tuple[str, int]]) -> str | None:
        for item_id, quantity in wanted:
            if not await self.reserve(item_id, quantity):
                return item_id
        return None

    async def release(self, item_id: str, quantity: int) -> None:
        item = self.items[item_id]
        self.items[item_id] = dataclasses.replace(item, stock=item.stock + quantity)


class FakeOrderRepository:
    def __init__(self, state: FakeCommerceState) -> None:
        self.state = state

    async def add(self, order: Order) -> None:
        assert order.payment is not None, "orders are stored with their payment"
        assert order.id not in self.state.orders, f"order {order.id} added twice"
        self.state.orders[order.id] = order

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        return self.state.orders.get(order_id)

    async def lock_current(self, order: Order) -> Order | None:
        return self.state.orders.get(order.id)

    async def save_status(self, order: Order) -> None:
        stored = self.state.orders[order.id]
        self.state.orders[order.id] = dataclasses.replace(
            stored, status=order.status, updated_at=order.updated_at, payment=order.payment
        )

    async def list_visible_to(
        self, user: User, limit: int, cursor: str | None, order_filter: OrderFilter | None = None
    ) -> Page[Order]:
        f = order_filter or OrderFilter()
        visible = [
            o
            for o in self.state.orders.values()
            if (
                user.role is Role.ADMIN
                or (user.role is Role.SELLER and user.id in o.seller_ids)
                or (user.role is Role.BUYER and o.buyer_id == user.id)
            )
            and (f.status is None or o.status is f.status)
            and (f.buyer_id is None or o.buyer_id == f.buyer_id)
            and (f.seller_id is None or f.seller_id in o.seller_ids)
            and (f.since is None or o.created_at >= f.since)
            and (f.until is None or o.created_at < f.until)
        ]
        visible.sort(key=lambda o: (o.created_at, o.id), reverse=True)
        if cursor is not None:
            created_at, _, order_id = cursor.partition("|")
            try:
                position = (datetime.fromisoformat(created_at), order_id)
            except ValueError:
                raise InvalidCursor() from None
            visible = [o for o in visible if (o.created_at, o.id) < position]
        page = visible[:limit]
        more = len(visible) > limit
        return Page(page, f"{page[-1].created_at.isoformat()}|{page[-1].id}" if more else None)

    async def unsettled(self, updated_before: datetime, limit: int) -> Sequence[Order]:
        waiting = [
            o for o in self.state.orders.values() if o.status in RESERVING and o.updated_at < updated_before
        ]
        return sorted(waiting, key=lambda o: o.updated_at)[:limit]


class FakeRefundRepository:
    def __init__(self, state: FakeCommerceState) -> None:
        self.state = state

    async def of_order(self, order_id: str) -> Sequence[Refund]:
        return [r for r in self.state.refunds.values() if r.order_id == order_id]

    async def add(self, refund: Refund) -> None:
        assert refund.id not in self.state.refunds, f"refund {refund.id} added twice"
        self.state.refunds[refund.id] = refund

    async def pending(
        self, created_after: datetime, updated_before: datetime, limit: int
    ) -> Sequence[Refund]:
        waiting = [
            r
            for r in self.state.refunds.values()
            if r.status is RefundStatus.PENDING
            and r.created_at > created_after
            and r.updated_at < updated_before
        ]
        return sorted(waiting, key=lambda r: (r.created_at, r.id))[:limit]

    async def count_pending(self, created_until: datetime) -> int:
        return sum(
            r.status is RefundStatus.PENDING and r.created_at <= created_until
            for r in self.state.refunds.values()
        )

    async def save(self, refund: Refund) -> None:
        stored = self.state.refunds[refund.id]
        self.state.refunds[refund.id] = dataclasses.replace(
            stored,
            status=refund.status,
            provider_refund_id=refund.provider_refund_id,
            updated_at=refund.updated_at,
        )


class FakePaymentEventLog:
    def __init__(self, state: FakeCommerceState) -> None:
        self.state = state

    async def record(
        self, event_id: str, event_type: str, order_id: str | None, outcome: str, now: datetime
    ) -> bool:
        if event_id in self.state.payment_events:
            return False
        self.state.payment_events[event_id] = (event_type, order_id, outcome)
        return True


class FakeWebhookOutbox:
    def __init__(self, state: FakeCommerceState) -> None:
        self.state = state

    async def enqueue_order_paid(self, order: Order, now: datetime) -> int:
        sellers = sorted(order.seller_ids & self.state.webhook_sellers)
        self.state.webhook_deliveries.extend((seller_id, order.id) for seller_id in sellers)
        return len(sellers)

    async def enqueue_order_refunded(
        self, order: Order, refund: Refund, shares: Mapping[str, Money], now: datetime
    ) -> int:
        sellers = sorted(order.seller_ids & self.state.webhook_sellers)
        self.state.refund_deliveries.extend(
            (seller_id, order.id, refund.id, shares[seller_id].cents) for seller_id in sellers
        )
        return len(sellers)


@dataclasses.dataclass
class _IdempotencyRecord:
    request_hash: str
    created_at: datetime
    updated_at: datetime
    response: IdempotentReplay | None = None


class FakeIdempotencyStore:
    """Each call takes effect at once, like the real store's autocommit statements."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], _IdempotencyRecord] = {}

    async def begin(self, user_id: str, key: str, request_hash: str, now: datetime) -> IdempotentReplay | str:
        record = self.keys.get((user_id, key))
        if record is None:
            self.keys[(user_id, key)] = _IdempotencyRecord(request_hash, now, now)
            return "new"
        if record.request_hash != request_hash:
            return "mismatch"
        if record.response is not None:
            return record.response
        if record.updated_at < now - IDEMPOTENCY_TAKEOVER_AFTER:
            record.updated_at = now
            return "new"
        return "in_progress"

    async def complete(self, user_id: str, key: str, status: int, body: bytes, now: datetime) -> None:
        record = self.keys[(user_id, key)]
        record.response, record.updated_at = IdempotentReplay(status, body), now

    async def abandon(self, user_id: str, key: str) -> None:
        record = self.keys.get((user_id, key))
        if record is not None and record.response is None:
            del self.keys[(user_id, key)]

    async def purge(self, older_than: datetime) -> int:
        old = [k for k, r in self.keys.items() if r.created_at < older_than]
        for k in old:
            del self.keys[k]
        return len(old)


# token -> (the provider's own record, what the charge call answers, decline reason); as the sandbox's.
FAKE_TEST_TOKENS: dict[str, tuple[str, str, str | None]] = {
    "tok_visa": ("succeeded", "succeeded", None),
    "tok_mastercard": ("succeeded", "succeeded", None),
    "tok_chargeDeclined": ("declined", "declined", "card_declined"),
    "tok_insufficientFunds": ("declined", "declined", "insufficient_funds"),
    "tok_processing": ("succeeded", "processing", None),
    "tok_gatewayTimeout": ("succeeded", "timeout", None),
}


class FakePaymentGateway:
    """A provider that keeps its own record of every charge (`charges`, by order id). With `down` set,
    requests never reach it: charge and lookup raise PaymentGatewayUnavailable and nothing is recorded."""

    name = "fake"

    def __init__(self) -> None:
        self.charges: dict[str, ChargeResult] = {}
        self.requests: list[ChargeRequest] = []
        self.refunds: dict[str, tuple[str, RefundRequest]] = {}
        """Our refund id -> (the provider's refund id, the request), refunds that went through."""
        self.refund_requests: list[RefundRequest] = []
        self.refund_answer: str = "succeeded"
        """What a new refund answers: `succeeded`, `pending` or `declined` (`down` overrides it)."""
        self.down = False
        self.closed = False

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.refund_requests.append(request)
        if self.down:
            raise PaymentGatewayUnavailable(request.order_id)
        if request.refund_id in self.refunds:  # one refund per refund id, as providers deduplicate
            return RefundResult("succeeded", self.refunds[request.refund_id][0])
        if self.refund_answer == "declined":
            return RefundResult("declined", None, "charge_already_refunded")
        provider_id = f"fake_re_{len(self.refunds) + 1}"
        if self.refund_answer == "succeeded":
            self.refunds[request.refund_id] = (provider_id, request)
        return RefundResult(self.refund_answer, provider_id)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.requests.append(request)
        if self.down:
            raise PaymentGatewayUnavailable(request.order_id)
        if request.order_id in self.charges:  # one charge per order, as providers deduplicate
            return self.charges[request.order_id]
        truth, answer, reason = FAKE_TEST_TOKENS.get(
            request.token, ("declined", "declined", "invalid_card_token")
        )
        provider_id = f"fake_ch_{len(self.charges) + 1}"
        self.charges[request.order_id] = ChargeResult(truth, provider_id, reason)
        if answer == "timeout":
            raise PaymentGatewayUnavailable(request.order_id)
        return ChargeResult(answer, provider_id, reason)

    async def lookup(self, order_id: str, payment_id: str) -> ChargeResult | None:
        if self.down:
            raise PaymentGatewayUnavailable(order_id)
        return self.charges.get(order_id)

    async def close(self) -> None:
        self.closed = True


class FakeSignInThrottle:
    """SignInThrottle in memory: at most `limit` counted attempts per account until one succeeds."""

    def __init__(self, limit: int, retry_after_s: int = 900) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.attempts: dict[str, int] = {}

    async def attempt(self, account: str) -> None:
        self.attempts[account] = self.attempts.get(account, 0) + 1
        if self.attempts[account] > self.limit:
            raise RateLimited(self.retry_after_s)

    async def succeeded(self, account: str) -> None:
        self.attempts.pop(account, None)

    async def undecided(self, account: str) -> None:
        self.attempts[account] -= 1


class FakeSessionStore:
    """Keeps what it is given in lists; `find` filters by user, trace and errors (enough for the use cases);
    `fail` makes writes raise, as a database that is down."""

    def __init__(self) -> None:
        self.requests: list[RequestEntry] = []
        self.events: list[ClientEvent] = []
        self.fail = False
        self.pruned_before: list[datetime] = []

    async def write(self, requests: Sequence[RequestEntry], events: Sequence[ClientEvent]) -> None:
        if self.fail:
            raise ConnectionError("the database is down")
        self.requests.extend(requests)
        self.events.extend(events)

    async def find(self, criteria: SessionFilter, limit: int, cursor: str | None) -> Page[SessionSummary]:
        sessions: dict[str, list[RequestEntry]] = {}
        for entry in self.requests:
            sessions.setdefault(entry.session_id, []).append(entry)
        found = []
        for session_id, entries in sessions.items():
            if criteria.user_id is not None and all(e.user_id != criteria.user_id for e in entries):
                continue
            if criteria.trace_id is not None and all(e.trace_id != criteria.trace_id for e in entries):
                continue
            errors = sum(e.status >= 500 for e in entries)
            if criteria.has_errors is not None and (errors > 0) != criteria.has_errors:
                continue
            users = [e.user_id for e in entries if e.user_id]
            found.append(
                SessionSummary(
                    session_id,
                    users[0] if users else None,
                    min(e.at for e in entries),
                    max(e.at for e in entries),
                    len(entries),
                    errors,
                    max(entries, key=lambda e: e.at).route,
                )
            )
        found.sort(key=lambda s: (s.ended_at, s.session_id), reverse=True)
        return Page(found[:limit], None)

    async def timeline(self, session_id: str) -> Timeline | None:
        return None

    async def prune(self, older_than: datetime) -> int:
        self.pruned_before.append(older_than)
        before = len(self.requests)
        self.requests = [e for e in self.requests if e.at >= older_than]
        return before - len(self.requests)


class FakeSessionRecorder:
    """Takes client events until `capacity` is reached, as the real buffer does."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.events: list[ClientEvent] = []

    def record_events(self, events: Sequence[ClientEvent]) -> bool:
        if len(self.events) + len(events) > self.capacity:
            return False
        self.events.extend(events)
        return True


# --- Administration ---------------------------------------------------------------------------------------


class FakeAuditLog:
    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = entries

    async def append(self, entry: AuditEntry) -> None:
        self.entries.append(entry if entry.trace_id else dataclasses.replace(entry, trace_id="f" * 32))

    async def find(self, audit_filter: AuditFilter, limit: int, cursor: str | None) -> Page[AuditEntry]:
        f = audit_filter
        matches = [
            e
            for e in sorted(self.entries, key=lambda e: (e.at, e.id), reverse=True)
            if (f.actor_id is None or e.actor_id == f.actor_id)
            and (f.action is None or e.action is f.action)
            and (f.target_id is None or e.target_id == f.target_id)
            and (f.since is None or e.at >= f.since)
            and (f.until is None or e.at < f.until)
        ]
        return _offset_page(matches, limit, cursor)


class FakeUserDirectory:
    def __init__(self, users: dict[str, User]) -> None:
        self.users = users

    async def find(self, user_filter: UserFilter, limit: int, cursor: str | None) -> Page[User]:
        f = user_filter
        matches = [
            u
            for u in sorted(self.users.values(), key=lambda u: (u.created_at, u.id), reverse=True)
            if (f.query is None or f.query in f"{u.email} {u.display_name}".lower())
            and (f.role is None or u.role is f.role)
            and (f.status is None or u.status is f.status)
        ]
        return _offset_page(matches, limit, cursor)

    async def set_role(self, user_id: str, role: Role) -> None:
        if user_id in self.users:
            self.users[user_id] = dataclasses.replace(self.users[user_id], role=role)

    async def count_active_admins(self) -> int:
        return sum(u.role is Role.ADMIN and u.status is UserStatus.ACTIVE for u in self.users.values())


def _offset_page(matches: list[Any], limit: int, cursor: str | None) -> Page[Any]:
    try:
        start = int(cursor) if cursor else 0
    except ValueError:
        raise InvalidCursor() from None
    more = start + limit < len(matches)
    return Page(items=matches[start : start + limit], next_cursor=str(start + limit) if more else None)


class FakeItemModeration:
    def __init__(self, records: dict[str, tuple[datetime | None, str | None]]) -> None:
        self.records = records

    async def record(self, item_id: str, suspended_at: datetime | None, reason: str | None) -> None:
        self.records[item_id] = (suspended_at, reason)


class FakeDeliveryDesk:
    """Deliveries by id; `retry_now` makes a pending or failed one pending and due."""

    def __init__(self, records: dict[str, DeliveryRecord]) -> None:
        self.records = records

    async def find(
        self, seller_id: str | None, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> Page[DeliveryRecord]:
        matches = [
            r
            for r in sorted(self.records.values(), key=lambda r: (r.created_at, r.id), reverse=True)
            if (seller_id is None or r.seller_id == seller_id) and (status is None or r.status is status)
        ]
        return _offset_page(matches, limit, cursor)

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        return self.records.get(delivery_id)

    async def retry_now(self, delivery_id: str, now: datetime) -> bool:
        record = self.records.get(delivery_id)
        if record is None or record.status not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            return False
        self.records[delivery_id] = dataclasses.replace(
            record, status=DeliveryStatus.PENDING, next_attempt_at=now, updated_at=now
        )
        return True


class FakeAdminUnitOfWork(FakeUnitOfWork):
    """The admin writes' unit of work: audit entries are staged and committed with the rest."""

    def __init__(
        self,
        store: FakeStore,
        audit: list[AuditEntry],
        deliveries: dict[str, DeliveryRecord] | None = None,
        events: FakeEventPublisher | None = None,
    ) -> None:
        super().__init__(store.users, store.items, store.commerce, events)
        self._audit = audit
        self._deliveries = deliveries if deliveries is not None else {}

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.audit = FakeAuditLog(list(self._audit))
        self.directory = FakeUserDirectory(self.users.store)
        self.moderation = FakeItemModeration({})
        self.deliveries = FakeDeliveryDesk(dict(self._deliveries))
        return self

    async def commit(self) -> None:
        await super().commit()
        self._audit[:] = self.audit.entries
        self._deliveries.clear()
        self._deliveries.update(self.deliveries.records)
