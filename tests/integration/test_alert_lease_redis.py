"""The alert notifier lease on a real Redis (127.0.0.1:6379, or MARKET_TEST_REDIS_URL), as replicas share it:
one holder at a time, renewed by its holder, taken over when the holder lets go or stops renewing."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from market.ops.alerting.monitor import RedisLease

REDIS_URL = os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"market-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_one_replica_holds_the_lease_and_renews_it_until_it_lets_go(prefix):
    first, second = (RedisLease.from_url(REDIS_URL, prefix, ttl_s=30) for _ in range(2))
    assert first.acquire()
    assert not second.acquire()
    assert first.acquire()  # its own lease: renewed, not refused
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_a_holder_that_stops_renewing_loses_the_lease_when_it_expires(prefix):
    silent, successor = (RedisLease.from_url(REDIS_URL, prefix, ttl_s=0.3) for _ in range(2))
    assert silent.acquire()
    assert not successor.acquire()
    deadline = time.monotonic() + 5
    while not successor.acquire():  # the silent holder was killed: no release, no renewal
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    assert not silent.acquire()
    successor.release()


def test_releasing_a_lease_someone_else_holds_leaves_it_alone(prefix):
    holder, other = (RedisLease.from_url(REDIS_URL, prefix, ttl_s=30) for _ in range(2))
    assert holder.acquire()
    other.release()
    assert not RedisLease.from_url(REDIS_URL, prefix, ttl_s=30).acquire()
    holder.release()


def test_an_unreachable_redis_means_notify_anyway():
    lease = RedisLease.from_url("redis://127.0.0.1:1/0", "market-test", ttl_s=5)
    assert lease.acquire()
    lease.release()
