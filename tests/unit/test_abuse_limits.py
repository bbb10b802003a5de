"""Abuse limits without a network: the per-account sign-in limit in the use case, the fixed-window limiter on
the memory store, client addresses behind proxies, the cap on concurrent password hashes, and their settings."""

from __future__ import annotations

import asyncio
import threading
from ipaddress import ip_network
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher

from market.adapters.http.limits import InFlight, client_ip
from market.adapters.security.limits import (
    CountingMemoryStore,
    CountingRedisStore,
    Limiter,
    StoreSignInThrottle,
)
from market.adapters.security.passwords import Argon2PasswordHasher
from market.application.accounts import Register, change_password, issue_token, register_user
from market.config import ConfigError, Rate, Settings
from market.domain.errors import InvalidCredentials, RateLimited, ServerBusy, WrongPassword
from tests.support.fakes import (
    FakeClock,
    FakeIdGenerator,
    FakePasswordHasher,
    FakeSignInThrottle,
    FakeStore,
    FakeTokenService,
)

PASSWORD = "correct horse battery"


async def _world_with_ada() -> tuple[FakeStore, FakePasswordHasher]:
    store, hasher = FakeStore(), FakePasswordHasher()
    await register_user(
        Register("ada@example.com", PASSWORD, "Ada", "buyer"),
        uow=store.uow,
        hasher=hasher,
        ids=FakeIdGenerator(),
        clock=FakeClock(),
    )
    return store, hasher


async def _sign_in(store, hasher, throttle, email: str, password: str):
    return await issue_token(
        email,
        password,
        repos=store.repos,
        uow=store.uow,
        hasher=hasher,
        tokens=FakeTokenService(),
        clock=FakeClock(),
        dummy_hash="hashed:nobody",
        throttle=throttle,
    )


async def test_an_account_with_too_many_failed_sign_ins_is_refused_even_with_the_right_password():
    store, hasher = await _world_with_ada()
    throttle = FakeSignInThrottle(limit=3)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await _sign_in(store, hasher, throttle, "ada@example.com", "wrong password!")
    with pytest.raises(RateLimited) as refused:
        await _sign_in(store, hasher, throttle, "ada@example.com", PASSWORD)
    assert refused.value.retry_after_s == 900


async def test_the_account_limit_keys_by_normalised_email_and_spares_other_accounts():
    store, hasher = await _world_with_ada()
    throttle = FakeSignInThrottle(limit=2)
    for spelling in ("ada@example.com", "  ADA@Example.com "):
        with pytest.raises(InvalidCredentials):
            await _sign_in(store, hasher, throttle, spelling, "wrong password!")
    with pytest.raises(RateLimited):
        await _sign_in(store, hasher, throttle, "Ada@example.com", "wrong password!")
    with pytest.raises(InvalidCredentials):  # another address is still only told "wrong"
        await _sign_in(store, hasher, throttle, "bob@example.com", "wrong password!")


async def test_unknown_addresses_are_limited_like_real_ones_so_the_limit_reveals_no_accounts():
    store, hasher = await _world_with_ada()
    throttle = FakeSignInThrottle(limit=1)
    with pytest.raises(InvalidCredentials):
        await _sign_in(store, hasher, throttle, "nobody@example.com", "wrong password!")
    with pytest.raises(RateLimited):
        await _sign_in(store, hasher, throttle, "nobody@example.com", "wrong password!")


async def test_a_successful_sign_in_clears_the_accounts_failed_attempts():
    store, hasher = await _world_with_ada()
    throttle = FakeSignInThrottle(limit=2)
    with pytest.raises(InvalidCredentials):
        await _sign_in(store, hasher, throttle, "ada@example.com", "wrong password!")
    await _sign_in(store, hasher, throttle, "ada@example.com", PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await _sign_in(store, hasher, throttle, "ada@example.com", "wrong password!")


async def test_wrong_current_passwords_count_against_the_account_so_a_stolen_token_cannot_guess_it():
    """POST /me/password checks the same password as a sign-in: without the account's limit, whoever holds a
    token could guess the password there without end, then change it and lock the owner out."""
    store, hasher = await _world_with_ada()
    ada = next(iter(store.users.values()))
    throttle = FakeSignInThrottle(limit=2)
    for _ in range(2):
        with pytest.raises(WrongPassword):
            await change_password(
                ada,
                "a guessed password",
                "a brand new password",
                uow=store.uow,
                hasher=hasher,
                throttle=throttle,
            )
    with pytest.raises(RateLimited):  # even the right one, as for sign-ins
        await change_password(
            ada, PASSWORD, "a brand new password", uow=store.uow, hasher=hasher, throttle=throttle
        )
    with pytest.raises(RateLimited):  # and the sign-in of the same account
        await _sign_in(store, hasher, throttle, "ada@example.com", PASSWORD)


async def test_a_password_change_with_the_right_current_password_clears_the_accounts_failed_attempts():
    store, hasher = await _world_with_ada()
    ada = next(iter(store.users.values()))
    throttle = FakeSignInThrottle(limit=2)
    with pytest.raises(InvalidCredentials):
        await _sign_in(store, hasher, throttle, "ada@example.com", "wrong password!")
    await change_password(
        ada, PASSWORD, "a brand new password", uow=store.uow, hasher=hasher, throttle=throttle
    )
    assert throttle.attempts.get("ada@example.com", 0) == 0


async def test_password_changes_refused_as_busy_do_not_count_against_the_account():
    store, _ = await _world_with_ada()
    ada = next(iter(store.users.values()))
    throttle = FakeSignInThrottle(limit=1)
    for _ in range(3):
        with pytest.raises(ServerBusy):
            await change_password(
                ada, PASSWORD, "a brand new password", uow=store.uow, hasher=_BusyHasher(), throttle=throttle
            )
    assert throttle.attempts["ada@example.com"] == 0


async def test_the_limiter_allows_the_rate_then_refuses_with_the_seconds_left_in_the_window():
    limiter = Limiter(CountingMemoryStore())
    for _ in range(5):
        await limiter.hit("ip:sign-in:10.0.0.1", Rate(5, 60), "Too many.")
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("ip:sign-in:10.0.0.1", Rate(5, 60), "Too many.")
    assert 1 <= refused.value.retry_after_s <= 60
    await limiter.hit("ip:sign-in:10.0.0.2", Rate(5, 60), "Too many.")  # another key has its own count


async def test_concurrent_hits_on_one_key_are_all_counted():
    limiter = Limiter(CountingMemoryStore())
    outcomes = await asyncio.gather(
        *(limiter.hit("k", Rate(10, 60), "Too many.") for _ in range(50)), return_exceptions=True
    )
    assert sum(o is None for o in outcomes) == 10
    assert all(isinstance(o, RateLimited) for o in outcomes if o is not None)


async def test_a_new_window_starts_once_the_last_one_has_ended(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr("market.adapters.security.limits.time.time", lambda: now[0])
    limiter = Limiter(CountingMemoryStore())
    await limiter.hit("k", Rate(1, 60), "Too many.")
    with pytest.raises(RateLimited):
        await limiter.hit("k", Rate(1, 60), "Too many.")
    now[0] += 61
    await limiter.hit("k", Rate(1, 60), "Too many.")


async def test_the_account_throttle_keeps_no_email_in_its_keys():
    store = CountingMemoryStore()
    throttle = StoreSignInThrottle(Limiter(store), Rate(3, 900))
    await throttle.attempt("ada@example.com")
    keys = list(store._store)
    assert len(keys) == 1 and "ada" not in keys[0]


class _FlakyStore(CountingRedisStore):
    """A shared store whose server is down while `down` is set (each call that reached it is counted)."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.counts: dict[str, int] = {}

    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        self.calls += 1
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key], float(window_s)


async def test_a_store_outage_neither_fails_requests_nor_lifts_the_limit():
    limiter = Limiter(_FlakyStore())
    await limiter.hit("k", Rate(2, 60), "Too many.")
    await limiter.hit("k", Rate(2, 60), "Too many.")
    with pytest.raises(RateLimited):  # counted in this process meanwhile
        await limiter.hit("k", Rate(2, 60), "Too many.")


async def test_during_an_outage_the_store_is_tried_again_only_every_few_seconds(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr("market.adapters.security.limits.time.monotonic", lambda: now[0])
    store = _FlakyStore()
    limiter = Limiter(store)
    for client in range(20):
        await limiter.hit(f"ip:{client}", Rate(5, 60), "Too many.")
    assert store.calls == 1  # not a connection timeout per request
    now[0] += Limiter.STORE_RETRY_S
    await limiter.hit("k", Rate(5, 60), "Too many.")
    assert store.calls == 2
    store.down = False
    now[0] += Limiter.STORE_RETRY_S
    await limiter.hit("k", Rate(5, 60), "Too many.")
    await limiter.hit("k", Rate(5, 60), "Too many.")
    assert store.calls == 4 and store.counts == {"k": 2}  # shared counting again once it answers
    said = [r.getMessage() for r in caplog.records if r.name == "market.adapters.security.limits"]
    assert said == [
        "rate limit store unavailable (ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection "
        "refused.); limits are counted in this process until it answers",
        "rate limit store answers again; limits are shared again",
    ]  # once per outage, no traceback per request


def _connection(peer: str, forwarded: str | None = None) -> SimpleNamespace:
    headers = {"x-forwarded-for": forwarded} if forwarded is not None else {}
    return SimpleNamespace(client=SimpleNamespace(host=peer), headers=headers)


def test_the_client_is_the_socket_peer_and_x_forwarded_for_is_ignored_without_trusted_proxies():
    assert client_ip(_connection("203.0.113.9", "198.51.100.1"), ()) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_forwarded_address():
    trusted = (ip_network("10.0.0.0/8"),)
    # The client wrote 1.1.1.1 itself; the proxy appended the address it saw.
    assert client_ip(_connection("10.0.0.5", "1.1.1.1, 198.51.100.7, 10.0.0.4"), trusted) == "198.51.100.7"
    assert client_ip(_connection("203.0.113.9", "198.51.100.7"), trusted) == "203.0.113.9"


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


async def test_a_hash_that_gets_no_slot_within_the_wait_is_refused_as_busy():
    argon2 = _BlockingArgon2()
    hasher = Argon2PasswordHasher(argon2, concurrency=1, wait_s=0.05)
    holder = asyncio.create_task(hasher.hash("first password"))
    await asyncio.to_thread(argon2.started.acquire)
    with pytest.raises(ServerBusy) as busy:
        await hasher.hash("second password")
    assert busy.value.retry_after_s >= 1
    argon2.release.set()
    assert await holder == "hash"
    assert await hasher.hash("third password") == "hash"  # the slot was given back


async def test_without_a_wait_limit_a_hash_waits_for_its_slot_however_long_it_takes():
    """Rate limits off (wait_s None): nobody is refused, the cap still holds."""
    argon2 = _BlockingArgon2()
    hasher = Argon2PasswordHasher(argon2, concurrency=1, wait_s=None)
    holder = asyncio.create_task(hasher.hash("first password"))
    await asyncio.to_thread(argon2.started.acquire)
    waiting = [asyncio.create_task(hasher.hash(f"password {n}")) for n in range(3)]
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in waiting)  # queued, neither refused nor started
    assert not argon2.started.acquire(blocking=False)
    argon2.release.set()
    assert await asyncio.gather(holder, *waiting) == ["hash"] * 4


async def test_no_more_hashes_run_at_once_than_the_cap():
    argon2 = _BlockingArgon2()
    hasher = Argon2PasswordHasher(argon2, concurrency=2, wait_s=5)
    tasks = [asyncio.create_task(hasher.hash(f"password {n}")) for n in range(5)]
    for _ in range(2):
        await asyncio.to_thread(argon2.started.acquire)
    await asyncio.sleep(0.05)
    assert not argon2.started.acquire(blocking=False)  # a third has not started
    argon2.release.set()
    assert await asyncio.gather(*tasks) == ["hash"] * 5


def test_rate_settings_read_hits_per_window():
    settings = Settings.from_env(
        {"MARKET_RATE_LIMIT_SIGN_IN": "5/10s", "MARKET_RATE_LIMIT_ACCOUNT": "3/1h"}, dotenv=None
    )
    assert settings.limits.sign_in == Rate(5, 10)
    assert settings.limits.account_failures == Rate(3, 3600)
    assert settings.limits.enabled
    assert not Settings.from_env({"MARKET_RATE_LIMITS": "off"}, dotenv=None).limits.enabled


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKET_RATE_LIMIT_SIGN_IN", "5"),
        ("MARKET_RATE_LIMIT_SIGN_IN", "0/1m"),
        ("MARKET_RATE_LIMIT_CHECKOUT", "5/1w"),
        ("MARKET_RATE_LIMIT_REGISTER", "5/2d"),
        ("MARKET_REDIS_URL", "http://localhost:6379"),
        ("MARKET_REDIS_URL", "redis://127.0.0.1:notaport/0"),  # was a traceback at start
        ("MARKET_REDIS_URL", "redis://127.0.0.1:99999/0"),
        ("MARKET_REDIS_URL", "redis://127.0.0.1:6379/abc"),  # was silently database 0
        ("MARKET_REDIS_URL", "redis://127.0.0.1:6379/1/2"),  # was silently database 12
        ("MARKET_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
        ("MARKET_PASSWORD_HASH_CONCURRENCY", "0"),
    ],
)
def test_a_bad_limit_setting_stops_the_start_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value}, dotenv=None)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "rediss://:secret@redis.internal:6380/2",
        "redis://[::1]:6379/1",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_a_redis_url_redis_accepts_is_taken(url):
    assert Settings.from_env({"MARKET_REDIS_URL": url}, dotenv=None).limits.redis_url == url


def test_a_bad_redis_url_is_refused_without_showing_its_password():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"MARKET_REDIS_URL": "redis://:hunter22@redis.internal:port/0"}, dotenv=None)
    assert "MARKET_REDIS_URL" in str(refused.value) and "hunter22" not in str(refused.value)


class _BusyHasher(FakePasswordHasher):
    async def verify(self, password_hash: str, password: str) -> bool:
        raise ServerBusy()


async def test_sign_ins_refused_as_busy_do_not_count_against_the_account():
    store, _ = await _world_with_ada()
    throttle = FakeSignInThrottle(limit=2)
    for _ in range(5):
        with pytest.raises(ServerBusy):
            await _sign_in(store, _BusyHasher(), throttle, "ada@example.com", PASSWORD)
    await _sign_in(store, FakePasswordHasher(), throttle, "ada@example.com", PASSWORD)


async def test_a_hit_taken_back_frees_its_place_in_the_window():
    limiter = Limiter(CountingMemoryStore())
    await limiter.hit("k", Rate(1, 60), "Too many.")
    await limiter.take_back("k")
    await limiter.hit("k", Rate(1, 60), "Too many.")
    with pytest.raises(RateLimited):
        await limiter.hit("k", Rate(1, 60), "Too many.")


async def test_a_client_gets_only_its_few_concurrent_places_and_they_come_back():
    in_flight = InFlight(per_client=2)
    async with in_flight.slot("10.0.0.1"), in_flight.slot("10.0.0.1"):
        with pytest.raises(RateLimited) as refused:
            async with in_flight.slot("10.0.0.1"):
                pass
        assert refused.value.retry_after_s == 1
        async with in_flight.slot("10.0.0.2"):  # another address has its own places
            pass
    async with in_flight.slot("10.0.0.1"), in_flight.slot("10.0.0.1"):
        pass
