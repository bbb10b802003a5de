"""Past-tense facts the business wants to count. They leave the domain as data; adapters turn them into
metrics, span events and analytics rows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all domain events."""


@dataclass(frozen=True, slots=True)
class UserRegistered(Event):
    user_id: str
    role: str


@dataclass(frozen=True, slots=True)
class ItemListed(Event):
    item_id: str
    seller_id: str


@dataclass(frozen=True, slots=True)
class ItemViewed(Event):
    item_id: str


@dataclass(frozen=True, slots=True)
class SearchPerformed(Event):
    """A browse request with a text query. `query` is normalised (see catalog.normalise_query)."""

    query: str
    result_count: int
