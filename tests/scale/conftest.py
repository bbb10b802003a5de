"""The multi-replica topology (tests/support/topology.py) once for this folder: three `market serve --workers 2`
(two on "host a" sharing a var folder, one on "host b") on one fresh PostgreSQL database and a Redis namespace
of their own, behind HAProxy; a local webhook receiver stands in for Slack. Everything is dropped afterwards."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from tests.support.postgres import admin_execute, postgres_url
from tests.support.servers.webhook_receiver import WebhookReceiver
from tests.support.topology import HAPROXY, Topology, start_topology

REDIS_URL = os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKUP_LEAD_S = 90
"""The scheduled backup is due at the first whole minute at least this long after the fixture starts: time
for the replicas to start (HH:MM is the schedule's resolution)."""


@pytest.fixture(scope="session")
def slack() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def backup_slot() -> datetime:
    soon = datetime.now(UTC) + timedelta(seconds=BACKUP_LEAD_S)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


@pytest.fixture(scope="session")
def topology(
    tmp_path_factory: pytest.TempPathFactory, slack: WebhookReceiver, backup_slot: datetime
) -> Iterator[Topology]:
    if not os.path.exists(HAPROXY) or shutil.which("pg_dump") is None:
        pytest.fail(
            "the scale tests need HAProxy and pg_dump (.ci/run installs them: apt-get install haproxy)"
        )
    workdir = tmp_path_factory.mktemp("scale")
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    prefix = f"market-test-{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    env = {
        "MARKET_REDIS_URL": REDIS_URL,
        "MARKET_REDIS_PREFIX": prefix,
        # 6 workers x 4 connections: the shared PostgreSQL (max_connections 100) also serves other suites.
        "MARKET_DATABASE_POOL_SIZE": "4",
        "MARKET_WEBHOOKS_ALLOW_PRIVATE": "1",
        "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s,1s,2s",
        "MARKET_ALERT_EVAL_INTERVAL": "1",
        "MARKET_ALERT_FOR": "1s",
        "MARKET_ALERT_SLACK_WEBHOOK_URL": slack.url,
        "MARKET_BACKUP_SCHEDULE": backup_slot.strftime("%H:%M"),
    }
    try:
        topology = start_topology(postgres_url(name), workdir, hosts=("a", "a", "b"), workers=2, env=env)
        try:
            yield topology
        finally:
            topology.stop()
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis = Redis.from_url(REDIS_URL)
        keys = list(redis.scan_iter(match=f"{prefix}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()
