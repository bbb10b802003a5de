"""The sign-in hashing budget without a network: the lane reserved for known credentials, the shared lane's excess
refused at once (and counted), and the signed known-device cookie."""

from __future__ import annotations

import asyncio
import threading

import pytest
from argon2 import PasswordHasher

from market.adapters.security.devices import KnownDevices
from market.adapters.security.passwords import Argon2PasswordHasher, known_credentials
from market.config import Settings
from market.domain.errors import ServerBusy

SECRET = "a-test-secret-key-of-at-least-32-bytes!!"


class _BlockingArgon2(PasswordHasher):
    """Hashes only once released, so a test can hold every slot."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def hash(self, password, *, salt=None):  # type: ignore[override]
        self.started.release()
        self.release.wait(10)
        return "hash"


async def _fill_shared_lane(hasher: Argon2PasswordHasher, argon2: _BlockingArgon2) -> list[asyncio.Task[str]]:
    running = asyncio.create_task(hasher.hash("flood 1"))
    await asyncio.to_thread(argon2.started.acquire)
    waiting = asyncio.create_task(hasher.hash("flood 2"))  # the one caller allowed to queue
    await asyncio.sleep(0.01)
    return [running, waiting]


async def test_known_credentials_are_hashed_while_the_shared_lane_is_full():
    argon2, refusals = _BlockingArgon2(), []
    hasher = Argon2PasswordHasher(
        argon2, concurrency=2, reserved=1, wait_s=5, on_refused=lambda: refusals.append(1)
    )
    flood = await _fill_shared_lane(hasher, argon2)
    with known_credentials():
        known = asyncio.create_task(hasher.hash("a known device"))
    await asyncio.to_thread(argon2.started.acquire)  # it started at once, in the reserved slot
    argon2.release.set()
    assert await known == "hash"
    assert await asyncio.gather(*flood) == ["hash", "hash"]
    assert refusals == []
    hasher.close()


async def test_the_shared_lane_refuses_its_excess_at_once_and_counts_it():
    argon2, refusals = _BlockingArgon2(), []
    hasher = Argon2PasswordHasher(
        argon2, concurrency=2, reserved=1, wait_s=30, on_refused=lambda: refusals.append(1)
    )
    flood = await _fill_shared_lane(hasher, argon2)
    async with asyncio.timeout(5):  # not after the 30 s wait
        with pytest.raises(ServerBusy) as busy:
            await hasher.hash("flood 3")
    assert busy.value.retry_after_s >= 1
    assert refusals == [1]
    argon2.release.set()
    await asyncio.gather(*flood)
    hasher.close()


async def test_without_a_reserved_lane_every_caller_queues_alike():
    argon2 = _BlockingArgon2()
    hasher = Argon2PasswordHasher(argon2, concurrency=1, reserved=0, wait_s=0.05)
    holder = asyncio.create_task(hasher.hash("first"))
    await asyncio.to_thread(argon2.started.acquire)
    with known_credentials(), pytest.raises(ServerBusy):
        await hasher.hash("a known device gets no slot of its own")
    argon2.release.set()
    assert await holder == "hash"


def test_a_device_cookie_is_recognised_for_its_account_only_until_it_expires():
    now = [1_000_000.0]
    devices = KnownDevices(SECRET, lifetime_s=100, now=lambda: now[0])
    cookie = devices.issue("Ada@Example.com")
    assert devices.recognises(cookie, "ada@example.com ")  # the e-mail as sign-in normalises it
    assert not devices.recognises(cookie, "bob@example.com")
    assert not KnownDevices("another-secret-key-of-at-least-32-bytes!!").recognises(cookie, "ada@example.com")
    now[0] += 101
    assert not devices.recognises(cookie, "ada@example.com")


@pytest.mark.parametrize(
    "forged",
    ["", "x", "a.b.c", "é.1.2", "x" * 1000, "..", "0" * 32 + ".99999999999." + "0" * 32],
)
def test_a_forged_or_malformed_device_cookie_is_not_recognised(forged):
    assert not KnownDevices(SECRET).recognises(forged, "ada@example.com")


def test_a_tampered_expiry_is_not_recognised():
    devices = KnownDevices(SECRET)
    account, expires, mac = devices.issue("ada@example.com").split(".")
    assert not devices.recognises(f"{account}.{int(expires) + 10**6}.{mac}", "ada@example.com")


def test_the_reserved_share_defaults_to_half_the_cpus_and_reads_its_setting():
    assert Settings.from_env({}, dotenv=None).limits.hash_reserved >= 1
    assert Settings.from_env({"MARKET_PASSWORD_HASH_RESERVED": "0"}, dotenv=None).limits.hash_reserved == 0


async def test_a_closed_hasher_works_again_when_its_app_starts_again():
    hasher = Argon2PasswordHasher(
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1), concurrency=2, reserved=1
    )
    password_hash = await hasher.hash("a password")  # the shared lane's low-priority threads
    hasher.close()
    assert await hasher.verify(password_hash, "a password")
    hasher.close()
