"""The unit of work on both engines publishes the events it collected only once its transaction has committed;
a rollback leaves neither an analytics row nor a published event."""

from __future__ import annotations

import uuid

import pytest

from market.adapters.db.repositories import PiccoloUnitOfWork
from market.domain.events import ItemListed, OrderPaid, SearchPerformed
from market.domain.money import Money
from tests.support.database import count
from tests.support.factories import T0
from tests.support.fakes import FakeEventPublisher

LISTED = ItemListed(str(uuid.uuid4()), str(uuid.uuid4()))


async def test_collected_events_are_recorded_and_published_after_commit(db):
    events = FakeEventPublisher()
    async with PiccoloUnitOfWork(db, events=events) as work:
        await work.collect([SearchPerformed("mug", 2)], T0)
        await work.collect([LISTED], T0)  # published, not kept by analytics
        assert events.published == []
        await work.commit()
        assert events.published == [SearchPerformed("mug", 2), LISTED]
    assert await count(db, "analytics_events") == 1


async def test_a_rolled_back_unit_of_work_publishes_nothing(db):
    events = FakeEventPublisher()
    async with PiccoloUnitOfWork(db, events=events) as work:
        await work.collect([OrderPaid(str(uuid.uuid4()), Money(100, "EUR"))], T0)
    with pytest.raises(RuntimeError):
        async with PiccoloUnitOfWork(db, events=events) as work:
            await work.collect([OrderPaid(str(uuid.uuid4()), Money(100, "EUR"))], T0)
            raise RuntimeError("the work fails half-way")
    assert events.published == []
    assert await count(db, "analytics_events") == 0
