"""The ports: what the use cases need from the world, as Protocols. Adapters implement them; tests use the
`Fake*` doubles in tests/fakes.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, Self, TypeVar

from market.domain.catalog import Item, ItemFilter
from market.domain.events import Event
from market.domain.users import User

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; `next_cursor` is None on the last page."""

    items: Sequence[T]
    next_cursor: str | None


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Insert a new user; raise EmailAlreadyRegistered if the e-mail is taken."""

    async def get(self, user_id: str) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None: ...


class ItemRepository(Protocol):
    async def add(self, item: Item) -> None: ...

    async def get(self, item_id: str) -> Item | None:
        """Any item, archived included (sellers and admins manage archived items)."""

    async def update(self, item: Item) -> None: ...

    async def browse(self, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
        """Active items matching the filter: by relevance when it has a query, newest first otherwise.
        Raise InvalidCursor for a cursor this repository did not issue for the same ordering."""


class UnitOfWork(Protocol):
    """One atomic piece of work. Leaving the block without `commit()` rolls everything back."""

    users: UserRepository
    items: ItemRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class ReadRepositories(Protocol):
    """Repositories for reads that need no transaction (browsing, one item)."""

    users: UserRepository
    items: ItemRepository


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; never raises for a mismatch."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int


class TokenService(Protocol):
    def issue(self, user: User) -> AccessToken: ...

    def subject(self, token: str) -> str | None:
        """The user id the token was issued to, or None when it is forged, malformed or expired."""


class EventPublisher(Protocol):
    """Hands domain events to whatever counts them (metrics, span events, analytics)."""

    def publish(self, events: Sequence[Event]) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class IdGenerator(Protocol):
    def new_id(self) -> str: ...
