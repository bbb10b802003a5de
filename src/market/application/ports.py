"""The ports: what the use cases need from the world, as Protocols. Adapters implement them; tests use the
`Fake*` doubles in tests/support/fakes.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, Self, TypeVar, runtime_checkable

from market.domain.admin import AuditEntry, AuditFilter, UserFilter
from market.domain.analytics import (
    CartsReport,
    FunnelReport,
    PaymentsOnDay,
    PaymentsReport,
    Period,
    SearchReport,
    SellerDashboard,
    SessionsReport,
)
from market.domain.catalog import Item, ItemFilter
from market.domain.events import Event
from market.domain.money import Money
from market.domain.orders import Cart, Order, OrderFilter
from market.domain.refunds import Refund
from market.domain.sessions import ClientEvent, RequestEntry, SessionFilter, SessionSummary, Timeline
from market.domain.users import Role, User, UserStatus
from market.domain.webhooks import DeliveryRecord, DeliveryStatus

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; `next_cursor` is None on the last page."""

    items: Sequence[T]
    next_cursor: str | None


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Insert a new user; raise EmailAlreadyRegistered if the e-mail is taken."""

    async def get(self, user_id: str, *, for_update: bool = False) -> User | None:
        """With `for_update`, the row stays locked until the transaction ends (PostgreSQL)."""

    async def get_by_email(self, email: str) -> User | None: ...

    async def list_all(self) -> Sequence[User]:
        """Every account, oldest first (the operators' `market users list`)."""

    async def replace_password(
        self, user_id: str, password_hash: str, *, token_version: int | None = None
    ) -> bool:
        """Store a new password hash and bump the token version in one statement, so that every token issued
        under the old password stops working. With `token_version`, only while the user's version is still
        that one: False, and nothing written, when a password change, a sign-out or a disabling came first."""

    async def revoke_tokens(self, user_id: str, *, token_version: int | None = None) -> bool:
        """Bump the user's token version in one statement (never read-modify-write: two concurrent revocations
        must both count), so every token issued so far stops working. With `token_version`, only while the
        user's version is still that one (False, and nothing written, otherwise)."""

    async def set_status(self, user_id: str, status: UserStatus) -> None: ...

    async def record_login(self, user_id: str, at: datetime) -> None:
        """Remember the time of the user's latest successful sign-in."""


class ItemRepository(Protocol):
    async def add(self, item: Item) -> None: ...

    async def get(self, item_id: str, *, for_update: bool = False) -> Item | None:
        """Any item, archived included (sellers and admins manage archived items). With `for_update`, the row
        stays locked until the transaction ends (PostgreSQL): an edit read this way writes back no stale
        stock over a checkout's reservation."""

    async def get_on_sale(self, item_id: str) -> Item | None:
        """The item if buyers may see and buy it: active, and its seller not disabled; None otherwise."""

    async def update(self, item: Item) -> None: ...

    async def browse(self, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
        """Items of the filter's status matching it (active ones: those on sale, see `get_on_sale`): by
        relevance when it has a query, newest first otherwise.
        Raise InvalidCursor for a cursor this repository did not issue for the same ordering."""


class UnitOfWork(Protocol):
    """One atomic piece of work. Leaving the block without `commit()` rolls everything back.

    Domain events go through `collect`: recorded in the analytics log with the work, and published (metrics,
    span events) only once it has committed, so that a rolled-back change is never counted."""

    users: UserRepository
    items: ItemRepository
    carts: CartRepository
    stock: StockRepository
    orders: OrderRepository
    refunds: RefundRepository
    payment_events: PaymentEventLog
    outbox: WebhookOutbox
    analytics: AnalyticsLog

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def collect(self, events: Sequence[Event], now: datetime) -> None:
        """Record `events` (those analytics keeps) in this unit of work and publish them after `commit()`;
        leaving without commit drops them unpublished."""

    async def commit(self) -> None:
        """Make the work durable, then publish the collected events."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class ReadRepositories(Protocol):
    """Repositories for reads that need no transaction (browsing, one item)."""

    users: UserRepository
    items: ItemRepository
    analytics: AnalyticsLog


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str:
        """Raises ServerBusy when no hashing slot frees up within a short wait."""

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; never raises for a mismatch (ServerBusy when overloaded)."""


class SignInThrottle(Protocol):
    """Per-account limit on sign-in attempts, whatever address they come from."""

    async def attempt(self, account: str) -> None:
        """Count one attempt at `account` (a normalised e-mail) before its password is checked; raises
        RateLimited when the account has had too many failed attempts in the current window."""

    async def succeeded(self, account: str) -> None:
        """The password was right: forget the account's counted attempts."""

    async def undecided(self, account: str) -> None:
        """The password could not be checked (the service was too busy): uncount this attempt."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str = field(repr=False)
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    token_version: int  # a counter (not a secret): bumping it revokes tokens
    """The user's token version when the token was issued (see `User.accepts_token`)."""


class TokenService(Protocol):
    def issue(self, user: User) -> AccessToken:
        """A token for `user` that carries the user's current token version."""

    def read(self, token: str) -> TokenClaims | None:
        """Who the token was issued to, and under which token version; None when it is forged, malformed or
        expired. Whether it is revoked is the user's to say (`User.accepts_token`)."""


class EventPublisher(Protocol):
    """Hands domain events to whatever counts them (metrics, span events, analytics)."""

    def publish(self, events: Sequence[Event]) -> None: ...


class AnalyticsLog(Protocol):
    """The append-only store of business events that the reports read."""

    async def record(self, events: Sequence[Event], now: datetime) -> None:
        """Append the events analytics keeps (others are skipped) with the current request's session, user
        and trace. Inside a unit of work they commit or roll back with it; outside one, each stands alone."""


class AnalyticsReports(Protocol):
    async def funnel(self, period: Period) -> FunnelReport: ...

    async def search(self, period: Period) -> SearchReport: ...

    async def payments(self, period: Period) -> PaymentsReport: ...

    async def carts(self, period: Period, abandon_after: timedelta, now: datetime) -> CartsReport: ...

    async def sessions(self, period: Period) -> SessionsReport: ...

    async def payments_by_day(self, period: Period) -> Sequence[PaymentsOnDay]: ...

    async def seller_dashboard(self, seller_id: str, period: Period) -> SellerDashboard: ...

    async def prune(self, older_than: datetime) -> int:
        """Delete the events that happened before `older_than`; returns how many."""

    async def roll_up(self, now: datetime, kept_from: datetime | None = None) -> int:
        """One bounded pass maintaining the reports' rollups of closed days (none before `kept_from`, the
        retention's cut-off); returns how many days it did."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


# --- Commerce ----------------------------------------------------------------------------------------------


class CartRepository(Protocol):
    async def get(self, buyer_id: str) -> Cart:
        """The buyer's cart, lines priced at the items' current prices (empty cart if none)."""

    async def hold(self, buyer_id: str, now: datetime) -> None:
        """Lock the buyer's cart (created if missing) until the transaction ends (PostgreSQL; SQLite's write
        transaction holds the whole database): a change that reads the cart after this is checked against
        what the changes before it committed."""

    async def set_quantity(self, buyer_id: str, item_id: str, quantity: int, now: datetime) -> None:
        """Upsert the line; 0 deletes it."""

    async def remove_ordered_items(self, buyer_id: str, order_id: str, item_ids: Sequence[str]) -> None:
        """The placed order `order_id`'s items leave the cart, and its checkout releases the cart."""

    async def claim_for_checkout(self, buyer_id: str, order_id: str, now: datetime) -> Cart | None:
        """Mark the cart as being checked out by `order_id` and return it as it is once claimed (lines at
        current prices and stock); None if another checkout holds it."""

    async def release_checkout(self, buyer_id: str, order_id: str) -> None: ...


class StockRepository(Protocol):
    async def reserve(self, item_id: str, quantity: int) -> bool:
        """Atomically take `quantity` units if that many are left; False (and no change) otherwise."""

    async def reserve_all(self, wanted: Sequence[tuple[str, int]]) -> str | None:
        """Take each (item id, quantity) of `wanted` (sorted by item id) if that many are left, in one go;
        returns None, or the first item of `wanted` that lacks stock: then the caller rolls back (what was
        taken of the others is not given back here)."""

    async def release(self, item_id: str, quantity: int) -> None: ...


class OrderRepository(Protocol):
    async def add(self, order: Order) -> None:
        """Insert the order, its lines and its payment."""

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        """With `for_update`, the row stays locked until the transaction ends (PostgreSQL)."""

    async def lock_current(self, order: Order) -> Order | None:
        """`order` as stored now, its row locked until the transaction ends (PostgreSQL), like
        `get(order.id, for_update=True)` but reading back only what may change once an order is placed (status,
        `updated_at`, the payment's fields): its lines and total are `order`'s own. None if there is no such
        order."""

    async def save_status(self, order: Order) -> None:
        """Persist the order's status and its payment's fields."""

    async def list_visible_to(
        self, user: User, limit: int, cursor: str | None, order_filter: OrderFilter | None = None
    ) -> Page[Order]:
        """Buyers: their own; sellers: orders with their items; admins: all; narrowed by `order_filter`.
        Newest first. Raise InvalidCursor for a cursor issued for another filter."""

    async def unsettled(self, updated_before: datetime, limit: int) -> Sequence[Order]:
        """Orders still pending_payment or processing that were last changed before the given time, or
        whose charge call failed (payment failure_reason `gateway_unavailable`)."""


class RefundRepository(Protocol):
    """An order's refunds. Read them with the order's row locked (`OrderRepository.get(for_update=True)`,
    or SQLite's write transaction): what is left to refund is decided under that lock."""

    async def of_order(self, order_id: str) -> Sequence[Refund]:
        """Every refund of the order, oldest first."""

    async def add(self, refund: Refund) -> None: ...

    async def save(self, refund: Refund) -> None:
        """Persist the refund's status, provider refund id and `updated_at`."""

    async def pending(
        self, created_after: datetime, updated_before: datetime, limit: int
    ) -> Sequence[Refund]:
        """Refunds still pending, created after `created_after` and last changed before `updated_before`,
        oldest first."""

    async def count_pending(self, created_until: datetime) -> int:
        """How many refunds are still pending that were created at or before `created_until` (the sweep asks
        about those created after it)."""


class PaymentEventLog(Protocol):
    async def record(
        self, event_id: str, event_type: str, order_id: str | None, outcome: str, now: datetime
    ) -> bool:
        """Remember a provider event; False when this event id was recorded before (a duplicate)."""


class WebhookOutbox(Protocol):
    async def enqueue_order_paid(self, order: Order, now: datetime) -> int:
        """Queue an `order.paid` delivery for each of the order's sellers with an enabled endpoint, in the
        current transaction. Returns how many were queued."""

    async def enqueue_order_refunded(
        self, order: Order, refund: Refund, shares: Mapping[str, Money], now: datetime
    ) -> int:
        """Queue an `order.refunded` delivery for each of the order's sellers with an enabled endpoint, in the
        current transaction, each telling its seller their own share of the refund (`shares`, by seller id)
        and nothing of the other sellers'. Returns how many were queued."""


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    order_id: str
    payment_id: str
    amount: Money
    method: str
    token: str = field(repr=False)  # never in logs, tracebacks or Sentry's local variables


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What the provider says about a charge: `succeeded`, `declined` or `processing`."""

    status: str
    provider_payment_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Give `amount` of the order's payment back. `refund_id` is ours: the provider deduplicates on it (a
    retry refunds once) and echoes it in its events, so that an event about this refund is recognised."""

    refund_id: str
    order_id: str
    payment_id: str
    provider_payment_id: str | None
    amount: Money
    reason: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    """What the provider says about a refund: `succeeded`, `pending` (its event settles it later) or
    `declined` (with a reason; nothing was refunded)."""

    status: str
    provider_refund_id: str | None = None
    reason: str | None = None


class PaymentGateway(Protocol):
    name: str

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge once per order (the provider deduplicates on the payment id). Raises
        PaymentGatewayUnavailable on timeouts and provider errors: the outcome is then unknown."""

    async def lookup(self, order_id: str, payment_id: str) -> ChargeResult | None:
        """The provider's record of the charge for this order, or None when it never received one."""

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund once per `refund_id`. Raises PaymentGatewayUnavailable on timeouts and provider errors: the
        outcome is then unknown."""

    async def close(self) -> None:
        """Release connections and background work at shutdown."""


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified event from the payment provider."""

    id: str
    type: str  # payment.succeeded | payment.failed | payment.refunded
    order_id: str
    provider_payment_id: str | None = None
    reason: str | None = None
    refund_id: str | None = None
    """payment.refunded: our refund's id when the refund was ours (the provider echoes it)."""
    provider_refund_id: str | None = None
    amount_cents: int | None = None
    """payment.refunded: the amount of this refund (None: the payment is refunded in full); otherwise the
    payment's amount, when the event says it (checked against the order's)."""
    currency: str | None = None
    """The currency of `amount_cents`, when the event says it (checked against the order's)."""


class InvalidProviderSignature(Exception):
    """A provider webhook delivery whose signature does not authenticate it (missing, malformed, stale, or
    no match). `reason` is one of a bounded set, fit for a metric attribute."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ProviderEventSource(Protocol):
    """The payment provider's webhook deliveries: whether they are authentic, and what they say."""

    def verify(self, body: bytes, signature: str | None) -> None:
        """Raise InvalidProviderSignature unless `signature` (the delivery's signature header) signs `body`."""

    def parse(self, body: bytes) -> ProviderEvent | None:
        """The event in an authentic body; None for one that is not about our orders (acknowledged, so that the
        provider stops redelivering it). Raises InvalidProviderEvent for a body it does not understand."""


@dataclass(frozen=True, slots=True)
class IdempotentReplay:
    status: int
    body: bytes


class IdempotencyStore(Protocol):
    async def begin(self, user_id: str, key: str, request_hash: str, now: datetime) -> IdempotentReplay | str:
        """Claim the key for this request. Returns "new" (go ahead), "in_progress", "mismatch" (same key,
        other body), or the stored response to replay."""

    async def complete(self, user_id: str, key: str, status: int, body: bytes, now: datetime) -> None: ...

    async def abandon(self, user_id: str, key: str) -> None:
        """Forget a claim whose request failed unexpectedly, so the client may retry with the same key."""

    async def purge(self, older_than: datetime) -> int:
        """Forget keys created before `older_than`; returns how many."""


@runtime_checkable  # handlers receive it by dependency injection, which checks what it passes
class SessionStore(Protocol):
    """Where session timelines are kept (session replay)."""

    async def write(self, requests: Sequence[RequestEntry], events: Sequence[ClientEvent]) -> None:
        """Store a batch in one round trip (never called on a request path)."""

    async def find(self, criteria: SessionFilter, limit: int, cursor: str | None) -> Page[SessionSummary]:
        """Sessions matching every criterion, most recently active first."""

    async def timeline(self, session_id: str) -> Timeline | None:
        """The session's requests, its client's events and its business events in time order; None when
        nothing is known of it."""

    async def prune(self, older_than: datetime) -> int:
        """Forget entries older than `older_than`; returns how many were deleted."""


@runtime_checkable
class SessionRecorder(Protocol):
    """The per-process buffer in front of the store: taking an entry never waits for the database."""

    def record_events(self, events: Sequence[ClientEvent]) -> bool:
        """Queue client events; False when the buffer is full and they were dropped (and counted)."""


# --- Administration ----------------------------------------------------------------------------------------


class AuditLog(Protocol):
    """The append-only trail of admin writes."""

    async def append(self, entry: AuditEntry) -> None:
        """Inside a unit of work the entry commits or rolls back with the change it records. The adapter
        stamps the current trace id when the entry has none."""

    async def find(self, audit_filter: AuditFilter, limit: int, cursor: str | None) -> Page[AuditEntry]:
        """Newest first. Raise InvalidCursor for a cursor issued for another filter."""


class UserDirectory(Protocol):
    """The people list of the admin tools."""

    async def find(self, user_filter: UserFilter, limit: int, cursor: str | None) -> Page[User]:
        """Newest accounts first. Raise InvalidCursor for a cursor issued for another filter."""

    async def set_role(self, user_id: str, role: Role) -> None: ...

    async def count_active_admins(self) -> int:
        """Inside a unit of work: the active admins, with their rows locked (in id order) until it ends
        (PostgreSQL; SQLite's write transaction holds the whole database), so that two concurrent removals
        cannot both pass."""


class ItemModeration(Protocol):
    async def record(self, item_id: str, suspended_at: datetime | None, reason: str | None) -> None:
        """Store whether the item is suspended (since when) and the latest moderation reason."""


class DeliveryDesk(Protocol):
    """Seller webhook deliveries as operators see them."""

    async def find(
        self, seller_id: str | None, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> Page[DeliveryRecord]:
        """Newest first, with their attempts. Raise InvalidCursor for a cursor issued for another filter."""

    async def get(self, delivery_id: str) -> DeliveryRecord | None: ...

    async def retry_now(self, delivery_id: str, now: datetime) -> bool:
        """Make a pending or failed delivery due now (same id, so the same `webhook-id`); False otherwise."""


class AdminUnitOfWork(UnitOfWork, Protocol):
    audit: AuditLog
    directory: UserDirectory
    moderation: ItemModeration
    deliveries: DeliveryDesk


class AdminUnitOfWorkFactory(Protocol):
    def __call__(self) -> AdminUnitOfWork: ...
