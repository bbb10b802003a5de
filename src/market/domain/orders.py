"""Carts, orders and payments: where money moves."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .errors import CurrencyMismatch, DomainError, FieldError, ValidationFailed
from .money import Money
from .users import Role, User
from .validation import FieldErrors


class InsufficientStock(DomainError):
    """Fewer units left than asked for."""

    def __init__(self, title: str, available: int) -> None:
        super().__init__(
            f"Only {available} of '{title}' left." if available > 0 else f"'{title}' is out of stock."
        )
        self.available = available


class ItemUnavailable(DomainError):
    """An item in the cart is no longer for sale: archived, suspended, or its seller disabled."""

    def __init__(self, title: str) -> None:
        super().__init__(f"'{title}' is no longer available; remove it from your cart to check out.")
        self.title = title


class EmptyCart(DomainError):
    def __init__(self) -> None:
        super().__init__("The cart is empty; add an item before checking out.")


class CheckoutInProgress(DomainError):
    def __init__(self) -> None:
        super().__init__("A checkout for this cart is already in progress; wait for it to finish.")


class IllegalTransition(DomainError):
    """An order or payment was asked to move to a state it cannot reach from where it is."""


class PaymentDeclined(DomainError):
    def __init__(self, order_id: str, reason: str) -> None:
        super().__init__(
            f"The payment was declined ({reason.replace('_', ' ')}). Nothing was charged; try another card."
        )
        self.order_id = order_id
        self.reason = reason


class PaymentGatewayUnavailable(DomainError):
    """The payment provider did not answer in time or failed. The order is kept and reconciled later."""

    def __init__(self, order_id: str | None = None) -> None:
        super().__init__(
            "The payment provider is not answering right now. Your order is saved as pending and will be "
            "settled automatically. To try again, send the same Idempotency-Key: it never charges twice, while "
            "a new key places a new order."
        )
        self.order_id = order_id


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PROCESSING = "processing"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset(
        {OrderStatus.PAID, OrderStatus.PAYMENT_FAILED, OrderStatus.PROCESSING}
    ),
    OrderStatus.PROCESSING: frozenset({OrderStatus.PAID, OrderStatus.PAYMENT_FAILED}),
    OrderStatus.PAID: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.PARTIALLY_REFUNDED: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.PAYMENT_FAILED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}

# Orders whose payment went through: what a refund may take money back from.
PAID_STATES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})

# While an order is in one of these states its stock stays reserved.
RESERVING = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PROCESSING})


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class CartLine:
    item_id: str
    title: str
    quantity: int
    unit_price: Money
    seller_id: str
    stock: int
    available: bool = True
    """False once the item left the catalog after it was added (archived, suspended, its seller disabled): the
    line stays for the buyer to see and remove, and keeps the cart from being checked out."""

    @property
    def currency(self) -> str:
        return self.unit_price.currency

    @property
    def line_total(self) -> Money:
        return self.unit_price.times(self.quantity)


@dataclass(frozen=True, slots=True)
class Cart:
    buyer_id: str
    lines: tuple[CartLine, ...] = ()

    @property
    def currency(self) -> str | None:
        return self.lines[0].currency if self.lines else None

    def quantity_of(self, item_id: str) -> int:
        return next((line.quantity for line in self.lines if line.item_id == item_id), 0)

    def with_line(self, line: CartLine) -> Cart:
        """The cart once `line` is set: it replaces the line of the same item where that stands (a line keeps
        its place when its quantity changes), or comes last (lines are in the order they were added); a
        quantity of 0 removes the item's line."""
        lines = [kept for kept in self.lines if kept.item_id != line.item_id]
        if line.quantity > 0:
            at = next((i for i, kept in enumerate(self.lines) if kept.item_id == line.item_id), len(lines))
            lines.insert(at, line)
        return dataclasses.replace(self, lines=tuple(lines))

    @property
    def total(self) -> Money | None:
        """What the lines still for sale cost (an unavailable line cannot be bought, so it is not counted).
        None when no line is for sale, and when their prices no longer share a currency (a seller changed one
        after it was added): such a cart cannot be summed, nor checked out."""
        lines = [line for line in self.lines if line.available]
        if not lines or len({line.currency for line in lines}) > 1:
            return None
        total = Money(0, lines[0].currency)
        for line in lines:
            total = total + line.line_total
        return total


@dataclass(frozen=True, slots=True)
class OrderLine:
    item_id: str
    seller_id: str
    title: str
    quantity: int
    unit_price: Money

    @property
    def line_total(self) -> Money:
        return self.unit_price.times(self.quantity)


GATEWAY_UNAVAILABLE = "gateway_unavailable"
"""Payment failure_reason of a pending order whose charge call failed: its outcome is unknown, not in flight
(reconciliation asks the provider about these first)."""
NOT_RECEIVED_BY_PROVIDER = "not_received_by_provider"
"""Payment failure_reason of an order reconciliation failed because the provider holds no charge for it: the
charge call never reached the provider (an error, not a decline)."""


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    order_id: str
    status: PaymentStatus
    method: str
    amount: Money
    provider: str
    provider_payment_id: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    buyer_id: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    total: Money
    created_at: datetime
    updated_at: datetime
    payment: Payment | None = None
    traceparent: str | None = field(default=None, compare=False)
    """W3C reference of the span that created the order: provider events about its payment link to it,
    and seller webhooks about it carry it."""

    @property
    def currency(self) -> str:
        return self.total.currency

    @property
    def seller_ids(self) -> frozenset[str]:
        return frozenset(line.seller_id for line in self.lines)

    def as_seen_by(self, user: User) -> Order:
        """The order as `user` may read it: whole for its buyer and for admins; for a seller, only their own
        lines, with the total and the payment's amount being their subtotal. Other sellers'
        titles, quantities and prices, and the basket's total, are the buyer's business."""
        if user.role is not Role.SELLER:
            return self
        return self.seller_view(user.id)

    def seller_view(self, seller_id: str) -> Order:
        """Only `seller_id`'s lines; the total and the payment amount become their subtotal (the payment keeps
        its id, status and method: whether and how the order was paid is the seller's business too)."""
        lines = tuple(line for line in self.lines if line.seller_id == seller_id)
        subtotal = Money(0, self.currency)
        for line in lines:
            subtotal = subtotal + line.line_total
        payment = dataclasses.replace(self.payment, amount=subtotal) if self.payment else None
        return dataclasses.replace(self, lines=lines, total=subtotal, payment=payment)

    def can_become(self, status: OrderStatus) -> bool:
        return status in ALLOWED_TRANSITIONS[self.status]

    def transition(self, status: OrderStatus, now: datetime) -> Order:
        if not self.can_become(status):
            raise IllegalTransition(f"An order that is {self.status.value} cannot become {status.value}.")
        return dataclasses.replace(self, status=status, updated_at=now)


MAX_LINE_QUANTITY = 1000
MAX_CART_LINES = 200
"""The most distinct items one cart holds: each change reads the whole cart, so an unbounded one grew slower
to change and, with thousands of lines, reached overflow paths. Changing a line's quantity is always allowed."""
MAX_ORDER_CENTS = 2**63 - 1
"""The largest order total the database's 64-bit integer columns hold. Prices, quantities and the number of
lines are bounded now (MAX_CART_LINES), but carts filled before that bound may hold thousands of lines at the
highest price, which would add up past it."""


MIXED_CART = "The items in your cart are no longer priced in one currency; remove the ones you do not want."


def check_cart_quantity(
    cart: Cart, *, item_id: str, title: str, currency: str, stock: int, quantity: int
) -> None:
    """May the cart hold this item `quantity` times? Raises ValidationFailed (a bad quantity, or a new line
    past MAX_CART_LINES), CurrencyMismatch or InsufficientStock. Zero removes the line and is always allowed."""
    errors = FieldErrors()
    errors.check_count("quantity", quantity, minimum=0, maximum=MAX_LINE_QUANTITY)
    errors.raise_if_any()
    if quantity == 0:
        return
    if cart.quantity_of(item_id) == 0 and len(cart.lines) >= MAX_CART_LINES:
        message = f"must hold at most {MAX_CART_LINES} distinct items; remove a line first"
        raise ValidationFailed([FieldError("cart", message)], "The cart holds as many items as it may.")
    other_currencies = {line.currency for line in cart.lines if line.item_id != item_id}
    if other_currencies and currency not in other_currencies:
        if len({line.currency for line in cart.lines}) > 1:  # an item of it was repriced in another currency
            raise CurrencyMismatch(MIXED_CART)
        raise CurrencyMismatch(
            f"Your cart is in {cart.currency}; '{title}' is priced in {currency}. "
            "Check out or empty the cart first."
        )
    if quantity > stock:
        raise InsufficientStock(title, stock)


def place_order(*, order_id: str, cart: Cart, now: datetime, traceparent: str | None = None) -> Order:
    """A new order from the cart's lines at their current prices, awaiting payment."""
    if not cart.lines:
        raise EmptyCart()
    unavailable = next((line for line in cart.lines if not line.available), None)
    if unavailable is not None:
        raise ItemUnavailable(unavailable.title)
    total = cart.total
    if total is None:
        raise CurrencyMismatch(MIXED_CART)
    if total.cents > MAX_ORDER_CENTS:
        message = f"the total must be at most {MAX_ORDER_CENTS} minor units; remove some lines"
        raise ValidationFailed([FieldError("cart", message)], "The cart's total is too large for one order.")
    for line in cart.lines:
        if line.quantity > line.stock:
            raise InsufficientStock(line.title, line.stock)
    return Order(
        id=order_id,
        buyer_id=cart.buyer_id,
        status=OrderStatus.PENDING_PAYMENT,
        lines=tuple(OrderLine(c.item_id, c.seller_id, c.title, c.quantity, c.unit_price) for c in cart.lines),
        total=total,
        created_at=now,
        updated_at=now,
        traceparent=traceparent,
    )


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Filters of an order list, applied within what the caller may see. `since` is included, `until` is not
    (both on `created_at`); `seller_id` keeps orders holding at least one of that seller's lines."""

    status: OrderStatus | None = None
    buyer_id: str | None = None
    seller_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
