"""Users and items, the unit of work on Piccolo's transactions, and the repositories it hands out. Every
authenticated request reads its user, and every cart change its item: those reads (`get`) are written SQL on
both engines, as browse and search are (search.py), since Piccolo's query builder costs about 0.2-0.3 ms of CPU
more per statement (README, "Data layer"). The rest, off the hot path, uses the query builder."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

from market.application.ports import EventPublisher, Page
from market.domain.catalog import Item, ItemFilter, ItemStatus
from market.domain.errors import EmailAlreadyRegistered
from market.domain.events import Event
from market.domain.users import User, UserStatus
from market.domain.validation import parse_id

from .analytics import BufferedAnalyticsLog, Identity, SqlAnalyticsLog, anonymous
from .commerce import (
    PiccoloPaymentEventLog,
    SqlCartRepository,
    SqlOrderRepository,
    SqlStockRepository,
    SqlWebhookOutbox,
)
from .database import Database
from .refunds import SqlRefundRepository
from .rows import item_from_row, item_values, on_sale, user_from_row
from .search import browse_items
from .tables import ItemRow, UserRow, select_list

_USER = f"SELECT {select_list(UserRow)} FROM users WHERE id = {{}}"
_ITEM = f"SELECT {select_list(ItemRow)} FROM items WHERE id = {{}}"
_ITEM_ON_SALE = f"{_ITEM} AND {on_sale('items')}"


class PiccoloUserRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, user: User) -> None:
        # The UNIQUE constraint is the arbiter (two concurrent registrations cannot both pass a pre-check),
        # but inserting nothing on conflict keeps the transaction usable and the error readable.
        row = UserRow(
            id=uuid.UUID(user.id),
            email=user.email,
            display_name=user.display_name,
            role=user.role.value,
            password_hash=user.password_hash,
            created_at=user.created_at,
            token_version=user.token_version,
            status=user.status.value,
            last_login_at=user.last_login_at,
        )
        rows = await (
            UserRow.insert(row).on_conflict(target=UserRow.email, action="DO NOTHING").returning(UserRow.id)
        )
        if not rows:
            raise EmailAlreadyRegistered()

    async def get(self, user_id: str, *, for_update: bool = False) -> User | None:
        canonical = parse_id(user_id)
        if canonical is None:
            return None
        lock = " FOR UPDATE" if for_update and self._db.is_postgres else ""
        rows = await self._db.fetch(_USER + lock, canonical)
        return user_from_row(rows[0]) if rows else None

    async def get_by_email(self, email: str) -> User | None:
        row = await UserRow.select().where(UserRow.email == email).first()
        return user_from_row(row) if row else None

    async def list_all(self) -> Sequence[User]:
        rows = await UserRow.select().order_by(UserRow.created_at).order_by(UserRow.id)
        return [user_from_row(row) for row in rows]

    async def replace_password(
        self, user_id: str, password_hash: str, *, token_version: int | None = None
    ) -> bool:
        return await self._bump_token_version(user_id, token_version, {UserRow.password_hash: password_hash})

    async def revoke_tokens(self, user_id: str, *, token_version: int | None = None) -> bool:
        return await self._bump_token_version(user_id, token_version, {})

    async def _bump_token_version(
        self, user_id: str, token_version: int | None, values: dict[Any, Any]
    ) -> bool:
        # One conditional UPDATE: the row lock (PostgreSQL re-reads the version once a concurrent writer has
        # committed) or SQLite's single writer decides which of two racing changes finds the version unchanged.
        where = UserRow.id == uuid.UUID(user_id)
        if token_version is not None:
            where &= UserRow.token_version == token_version
        rows = await (
            UserRow.update({**values, UserRow.token_version: UserRow.token_version + 1})
            .where(where)
            .returning(UserRow.id)
        )
        return bool(rows)

    async def set_status(self, user_id: str, status: UserStatus) -> None:
        await UserRow.update({UserRow.status: status.value}).where(UserRow.id == uuid.UUID(user_id))

    async def record_login(self, user_id: str, at: datetime) -> None:
        await UserRow.update({UserRow.last_login_at: at}).where(UserRow.id == uuid.UUID(user_id))


class PiccoloItemRepository:
    """Piccolo's query builder, but for browse and search (search.py): the front page's hot path."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, item: Item) -> None:
        await ItemRow.insert(ItemRow(id=uuid.UUID(item.id), **item_values(item)))

    async def get(self, item_id: str, *, for_update: bool = False) -> Item | None:
        canonical = parse_id(item_id)
        if canonical is None:
            return None
        # NO KEY UPDATE: the lock `update` takes anyway, which lets checkouts' order lines (KEY SHARE) through.
        lock = " FOR NO KEY UPDATE" if for_update and self._db.is_postgres else ""
        rows = await self._db.fetch(_ITEM + lock, canonical)
        if not rows:
            return None
        row = rows[0]
        item = item_from_row(row)
        if row["suspended_at"] is not None:
            return dataclasses.replace(item, status=ItemStatus.SUSPENDED)
        return item

    async def get_on_sale(self, item_id: str) -> Item | None:
        canonical = parse_id(item_id)
        if canonical is None:
            return None
        rows = await self._db.fetch(_ITEM_ON_SALE, canonical)
        return item_from_row(rows[0]) if rows else None

    async def update(self, item: Item) -> None:
        await ItemRow.update(item_values(item)).where(ItemRow.id == uuid.UUID(item.id))

    async def browse(self, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
        return await browse_items(self._db, item_filter, limit, cursor)


class PiccoloUnitOfWork:
    """Rolls back unless `commit()` was called (Piccolo's own transaction commits on a clean exit). Collected
    events are published once the transaction has committed (`events` None: published nowhere)."""

    def __init__(
        self, db: Database, identity: Identity = anonymous, events: EventPublisher | None = None
    ) -> None:
        self._db = db
        self._publisher = events
        self.users = PiccoloUserRepository(db)
        self.items = PiccoloItemRepository(db)
        self.carts = SqlCartRepository(db)
        self.stock = SqlStockRepository(db)
        self.orders = SqlOrderRepository(db)
        self.refunds = SqlRefundRepository(db)
        self.payment_events = PiccoloPaymentEventLog(db)
        self.outbox = SqlWebhookOutbox(db)
        self.analytics = SqlAnalyticsLog(db, identity)

    async def __aenter__(self) -> Self:
        self._transaction = self._db.write_transaction()
        await self._transaction.__aenter__()
        self._committed = False
        self._collected: list[Event] = []
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._collected = []  # committed ones are published already; others never happened
        if not self._committed and exc is None:
            await self._transaction.rollback()
        await self._transaction.__aexit__(exc_type, exc, tb)

    async def collect(self, events: Sequence[Event], now: datetime) -> None:
        await self.analytics.record(events, now)
        self._collected.extend(events)

    async def commit(self) -> None:
        await self._transaction.commit()
        self._committed = True
        collected, self._collected = self._collected, []
        if collected and self._publisher is not None:
            self._publisher.publish(collected)


class PiccoloReadRepositories:
    """Repositories for reads outside a transaction (each query takes a pooled connection)."""

    def __init__(
        self,
        db: Database,
        identity: Identity = anonymous,
        analytics: SqlAnalyticsLog | BufferedAnalyticsLog | None = None,
    ) -> None:
        self.users = PiccoloUserRepository(db)
        self.items = PiccoloItemRepository(db)
        self.analytics = analytics or SqlAnalyticsLog(db, identity)
