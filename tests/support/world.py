"""The use cases wired to in-memory fakes, one call per use case: what the unit tests of the application layer
drive. A `World` starts empty; `stock_shelves()` adds the shop the checkout tests buy from."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from market.application.accounts import Register, issue_token, register_user
from market.application.admin import AdminPorts
from market.application.cart import set_cart_quantity, view_cart
from market.application.catalog import browse_items, list_item, view_item
from market.application.checkout import (
    PaymentMethodInput,
    ProviderEvent,
    apply_provider_event,
    checkout,
    reconcile_payments,
)
from market.application.moderation import archive_item, edit_item
from market.application.refunds import refund_order
from market.domain.catalog import ItemFilter
from market.domain.refunds import RefundReason
from market.domain.users import Role
from tests.support.factories import item, item_fields, user
from tests.support.fakes import (
    FakeAdminUnitOfWork,
    FakeAuditLog,
    FakeClock,
    FakeDeliveryDesk,
    FakeEventPublisher,
    FakeIdGenerator,
    FakePasswordHasher,
    FakePaymentGateway,
    FakeStore,
    FakeTokenService,
    FakeUserDirectory,
)

PASSWORD = "correct horse battery"
BUYER = user(Role.BUYER, "buyer-1")
OTHER_BUYER = user(Role.BUYER, "buyer-2")
SELLER = user(Role.SELLER, "seller-1")
OTHER_SELLER = user(Role.SELLER, "seller-2")
ADMIN = user(Role.ADMIN, "admin-1")


class World:
    """One store and one of each fake port, shared by every use case called through it."""

    def __init__(self) -> None:
        self.events = FakeEventPublisher()
        self.store = FakeStore(self.events)  # its units of work publish there once committed
        self.hasher = FakePasswordHasher()
        self.ids = FakeIdGenerator()
        self.clock = FakeClock()
        self.tokens = FakeTokenService()
        self.gateway = FakePaymentGateway()
        self.audit: list = []
        """The audit trail's committed entries."""
        self.deliveries: dict = {}
        """Seller webhook deliveries by id (the admin tools' view of them)."""

    def stock_shelves(self) -> World:
        """Add the checkout tests' shop: `mug` (EUR 19.99, 5 in stock), `hat` (OTHER_SELLER's, EUR 5, 3) and
        `dollar` (a USD item, 5)."""
        self.store.items["mug"] = item(id="mug", title="Blue mug", price_cents=1999, stock=5)
        self.store.items["hat"] = item(
            id="hat", title="Hat", price_cents=500, stock=3, seller_id=OTHER_SELLER.id
        )
        self.store.items["dollar"] = item(id="dollar", title="Yankee mug", currency="USD", stock=5)
        return self

    # --- accounts -------------------------------------------------------------------------------------------

    async def register(self, email: str = "ada@example.com", role: str = "buyer", **kwargs: Any):
        """`register_user`; `password` and `display_name` may be given as keywords."""
        return await register_user(
            Register(email, kwargs.pop("password", PASSWORD), kwargs.pop("display_name", "Ada"), role),
            uow=self.store.uow,
            hasher=self.hasher,
            ids=self.ids,
            clock=self.clock,
            **kwargs,
        )

    async def token(self, email: str, password: str, throttle: Any = None):
        """`issue_token` (with `throttle`, if given)."""
        return await issue_token(
            email,
            password,
            repos=self.store.repos,
            uow=self.store.uow,
            hasher=self.hasher,
            tokens=self.tokens,
            clock=self.clock,
            dummy_hash="hashed:nobody",
            throttle=throttle,
        )

    def accepted(self, token) -> bool:
        """Whether the token still signs its user in, as the HTTP auth step decides."""
        claims = self.tokens.read(token.token)
        user = self.store.users.get(claims.user_id) if claims else None
        return user is not None and user.accepts_token(claims.token_version)

    @property
    def admin(self) -> AdminPorts:
        """The admin tools' ports over the same store."""
        return AdminPorts(
            uow=lambda: FakeAdminUnitOfWork(self.store, self.audit, self.deliveries, self.events),
            directory=FakeUserDirectory(self.store.users),
            audit=FakeAuditLog(self.audit),
            deliveries=FakeDeliveryDesk(self.deliveries),
            clock=self.clock,
            ids=self.ids,
        )

    # --- catalog --------------------------------------------------------------------------------------------

    async def list(self, seller=SELLER, **fields: Any):
        """`list_item` with the factory's fields, overridden by `fields`."""
        return await list_item(
            seller,
            item_fields(**fields),
            uow=self.store.uow,
            ids=self.ids,
            clock=self.clock,
        )

    async def change(self, who, item_id, changes):
        """`edit_item` with fields only (`PATCH /items/{id}` without a status)."""
        return await edit_item(who, item_id, None, changes, ports=self.admin)

    async def archive(self, who, item_id):
        """`archive_item`."""
        await archive_item(who, item_id, ports=self.admin)

    async def view(self, item_id):
        """`view_item`."""
        return await view_item(item_id, repos=self.store.repos, clock=self.clock, events=self.events)

    async def browse(self, item_filter=None, limit=20, cursor=None):
        """`browse_items`, every item by default."""
        return await browse_items(
            item_filter or ItemFilter(),
            limit,
            cursor,
            repos=self.store.repos,
            clock=self.clock,
            events=self.events,
        )

    # --- cart and checkout ----------------------------------------------------------------------------------

    @property
    def state(self):
        """What the commerce ports persist."""
        return self.store.commerce

    def stock(self, item_id: str) -> int:
        """The item's stock now."""
        return self.store.items[item_id].stock

    async def put(self, item_id: str, quantity: int, buyer=BUYER):
        """`set_cart_quantity`."""
        return await set_cart_quantity(buyer, item_id, quantity, uow=self.store.uow, clock=self.clock)

    async def cart(self, buyer=BUYER):
        """`view_cart`."""
        return await view_cart(buyer, uow=self.store.uow)

    async def checkout(self, token: str = "tok_visa", buyer=BUYER):
        """`checkout` paying by card with the sandbox `token`."""
        return await checkout(
            buyer,
            PaymentMethodInput("card", token),
            uow=self.store.uow,
            gateway=self.gateway,
            ids=self.ids,
            clock=self.clock,
            traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        )

    async def event(self, event_id: str, event_type: str, order_id: str, **extra: Any):
        """`apply_provider_event`."""
        return await apply_provider_event(
            ProviderEvent(event_id, event_type, order_id, **extra),
            uow=self.store.uow,
            clock=self.clock,
            ids=self.ids,
        )

    async def reconcile(self):
        """`reconcile_payments`, a minute later (past the grace period)."""
        self.clock.advance(timedelta(minutes=1))
        return await reconcile_payments(uow=self.store.uow, gateway=self.gateway, clock=self.clock)

    async def refund(self, order_id: str, amount_cents=None, reason=None, *, admin=ADMIN, key=None):
        """`refund_order` through the fake gateway, by `admin` (reason: requested by the customer)."""
        return await refund_order(
            admin,
            order_id,
            amount_cents,
            reason or RefundReason.REQUESTED_BY_CUSTOMER,
            idempotency_key=key,
            ports=self.admin,
            gateway=self.gateway,
        )

    def refunds(self, order_id: str):
        """The order's stored refunds."""
        return [r for r in self.state.refunds.values() if r.order_id == order_id]

    def order(self, order_id: str):
        """The stored order."""
        return self.state.orders[order_id]

    def only_order(self):
        """The one order stored (fails if there is not exactly one)."""
        assert len(self.state.orders) == 1, self.state.orders
        return next(iter(self.state.orders.values()))

    def published(self, kind):
        """The events of type `kind` published so far."""
        return [e for e in self.events.published if isinstance(e, kind)]
