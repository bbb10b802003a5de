"""In-memory doubles of the ports (Fake<Port>), for unit tests of use cases."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from market.application.ports import AccessToken, Page
from market.domain.catalog import Item, ItemFilter, ItemStatus
from market.domain.errors import EmailAlreadyRegistered, InvalidCursor
from market.domain.events import Event
from market.domain.users import User


class FakeUserRepository:
    def __init__(self, store: dict[str, User]) -> None:
        self.store = store

    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self.store.values()):
            raise EmailAlreadyRegistered()
        self.store[user.id] = user

    async def get(self, user_id: str) -> User | None:
        return self.store.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self.store.values() if u.email == email), None)


class FakeItemRepository:
    def __init__(self, store: dict[str, Item]) -> None:
        self.store = store

    async def add(self, item: Item) -> None:
        self.store[item.id] = item

    async def get(self, item_id: str) -> Item | None:
        return self.store.get(item_id)

    async def update(self, item: Item) -> None:
        self.store[item.id] = item

    async def browse(self, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
        matches = [
            i
            for i in sorted(self.store.values(), key=lambda i: (i.created_at, i.id), reverse=True)
            if i.status is ItemStatus.ACTIVE
            and (item_filter.query is None or item_filter.query in f"{i.title} {i.description}".lower())
            and (item_filter.category is None or i.category == item_filter.category)
            and (item_filter.seller_id is None or i.seller_id == item_filter.seller_id)
            and (item_filter.min_price_cents is None or i.price_cents >= item_filter.min_price_cents)
            and (item_filter.max_price_cents is None or i.price_cents <= item_filter.max_price_cents)
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

    def __init__(self, users: dict[str, User], items: dict[str, Item]) -> None:
        self._users, self._items = users, items
        self.committed = False

    async def __aenter__(self) -> Self:
        self.users = FakeUserRepository(dict(self._users))
        self.items = FakeItemRepository(dict(self._items))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def commit(self) -> None:
        self._users.clear()
        self._users.update(self.users.store)
        self._items.clear()
        self._items.update(self.items.store)
        self.committed = True


class FakeStore:
    """The shared state behind the fakes, with factories shaped like the real ports."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.users, self.items)

    @property
    def repos(self) -> Any:
        store = self

        class Repos:
            users = FakeUserRepository(store.users)
            items = FakeItemRepository(store.items)

        return Repos()


class FakePasswordHasher:
    async def hash(self, password: str) -> str:
        return "hashed:" + password

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == "hashed:" + password


class FakeTokenService:
    def issue(self, user: User) -> AccessToken:
        return AccessToken(token="token-for:" + user.id, expires_in=3600)

    def subject(self, token: str) -> str | None:
        return token.removeprefix("token-for:") if token.startswith("token-for:") else None


class FakeEventPublisher:
    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.published.extend(events)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


class FakeIdGenerator:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._counter):012d}"
