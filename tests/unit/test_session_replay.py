"""Session replay without a database: the rules on client-reported events, the use cases with fakes, and the
recorder's bounded buffer (drops counted, never a wait)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from market.application import sessions as use_cases
from market.domain.errors import NotFound, PermissionDenied, RateLimited, ValidationFailed
from market.domain.sessions import (
    MAX_CLIENT_EVENTS,
    ClientEvent,
    RequestEntry,
    SessionFilter,
    parse_client_events,
)
from market.domain.users import Role
from market.telemetry.drops import SESSIONS, DropTally
from market.telemetry.sessions import SessionRecording
from tests.support.database import new_user
from tests.support.fakes import FakeClock, FakeSessionRecorder, FakeSessionStore, FakeUserRepository

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def parse(*events: dict, now: datetime = NOW):
    return parse_client_events(
        {"events": list(events)}, session_id="s-1", now=now, trace_id="t" * 32, user_id=None
    )


def fields_of(error: ValidationFailed) -> set[str]:
    return {e.field for e in error.errors}


def test_a_valid_batch_keeps_flat_fields_and_filters_emails_and_tokens():
    (event,) = parse(
        {
            "at": "2026-11-28T11:59:00Z",
            "name": "page_view",
            "page": "cart",
            "n": 3,
            "ok": True,
            "none": None,
            "note": "mail bob@example.com, bearer abc.def, tok_visa",
        }
    )
    assert event.at == NOW - timedelta(minutes=1) and event.name == "page_view"
    assert event.fields == {
        "page": "cart",
        "n": 3,
        "ok": True,
        "none": None,
        "note": "mail [Filtered], [Filtered] [Filtered]",  # a bearer token runs to the next space
    }
    assert event.session_id == "s-1" and event.trace_id == "t" * 32


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("card 4242424242424242 declined", "card [Filtered] declined"),
        ("4242 4242 4242 4242", "[Filtered]"),
        ("4242-4242-4242-4242", "[Filtered]"),
        ("amex 378282246310005", "amex [Filtered]"),
        ("pm_card_visa", "[Filtered]"),  # the whole token, not `[Filtered]_visa`
        ("tok_visa_debit failed", "[Filtered] failed"),
        ("key sk_live_51HabcdEFGHijklmnop", "key [Filtered]"),
        ("rk_test_abcdefghijklmnop", "[Filtered]"),
        # Not card numbers (no Luhn checksum, or too short): order numbers and counts stay readable.
        ("order 1234567890123456", "order 1234567890123456"),
        ("qty 12345", "qty 12345"),
    ],
)
def test_card_numbers_and_provider_keys_in_client_text_are_filtered(text, kept):
    (event,) = parse({"at": "2026-11-28T11:59:00Z", "name": "checkout_error", "note": text})
    assert event.fields == {"note": kept}


def test_a_field_whose_name_names_a_secret_keeps_no_value_whatever_it_holds():
    (event,) = parse(
        {
            "at": "2026-11-28T11:59:00Z",
            "name": "sign_in_attempt",
            "password": "hunter2-secret",
            "Card_Number": 4242424242424242,
            "cvc": "123",
            "api_key": "plain text",
            "session_token": None,
            "page": "login",
        }
    )
    assert event.fields == {
        "password": "[Filtered]",
        "Card_Number": "[Filtered]",
        "cvc": "[Filtered]",
        "api_key": "[Filtered]",
        "session_token": None,  # nothing to hide
        "page": "login",
    }


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"at": "2026-11-28T11:59:00Z"}, "events[0].name"),
        ({"at": "2026-11-28T11:59:00Z", "name": "has space"}, "events[0].name"),
        ({"name": "x"}, "events[0].at"),
        ({"at": "2026-11-26T11:59:00Z", "name": "x"}, "events[0].at"),  # older than a day
        ({"at": "2026-11-28T13:00:00Z", "name": "x"}, "events[0].at"),  # an hour in the future
        ({"at": "2026-11-28T11:59:00", "name": "x"}, "events[0].at"),  # no time zone
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "deep": {"a": 1}}, "events[0].deep"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "long": "y" * 201}, "events[0].long"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "kind": "request"}, "events[0].kind"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x", **{f"f{n}": n for n in range(11)}}, "events[0].fields"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "page": "\x00z"}, "events[0].page"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "page": "a\x00"}, "events[0].page"),
        ({"at": "2026-11-28T11:59:00Z", "name": "x\n"}, "events[0].name"),  # `$` matches before a final \n
        ({"at": "2026-11-28T11:59:00Z", "name": "x", "page\n": "cart"}, "events[0].page\n"),
        ({"at": "2026-11-28T11:59:00Z\x00", "name": "x"}, "events[0].at"),  # fromisoformat stops at NUL
    ],
)
def test_each_bad_event_field_is_named(event, field):
    with pytest.raises(ValidationFailed) as raised:
        parse(event)
    assert fields_of(raised.value) == {field}


def test_every_bad_field_of_an_event_is_named_not_only_the_first():
    with pytest.raises(ValidationFailed) as raised:
        parse({"at": "2026-11-28T11:59:00Z", "name": "x", "a": "\x00", "b": "fine", "c": [1], "d": "y" * 201})
    assert fields_of(raised.value) == {"events[0].a", "events[0].c", "events[0].d"}


def test_batches_are_small_and_never_empty():
    event = {"at": "2026-11-28T11:59:00Z", "name": "x"}
    with pytest.raises(ValidationFailed):
        parse(*[event] * (MAX_CLIENT_EVENTS + 1))
    with pytest.raises(ValidationFailed):
        parse()
    assert len(parse(*[event] * MAX_CLIENT_EVENTS)) == MAX_CLIENT_EVENTS


async def test_events_are_taken_only_for_the_callers_own_session():
    recorder, clock = FakeSessionRecorder(), FakeClock(NOW)
    body = {"events": [{"at": NOW.isoformat(), "name": "page_view"}]}
    for caller in (None, "other"):
        with pytest.raises(PermissionDenied):
            await use_cases.add_client_events(
                "mine",
                body,
                caller_session=caller,
                trace_id=None,
                user_id=None,
                recorder=recorder,
                clock=clock,
            )
    taken = await use_cases.add_client_events(
        "mine", body, caller_session="mine", trace_id=None, user_id="u", recorder=recorder, clock=clock
    )
    assert taken == 1 and [(e.session_id, e.user_id) for e in recorder.events] == [("mine", "u")]


async def test_a_full_recorder_answers_try_again_instead_of_waiting():
    recorder = FakeSessionRecorder(capacity=0)
    body = {"events": [{"at": NOW.isoformat(), "name": "page_view"}]}
    with pytest.raises(RateLimited):
        await use_cases.add_client_events(
            "mine",
            body,
            caller_session="mine",
            trace_id=None,
            user_id=None,
            recorder=recorder,
            clock=FakeClock(NOW),
        )


def entry(session: str, seconds: int, status: int = 200, user_id: str | None = None) -> RequestEntry:
    return RequestEntry(
        session,
        NOW + timedelta(seconds=seconds),
        "GET",
        "/api/v1/items",
        status,
        1.0,
        "a" * 32,
        user_id=user_id,
    )


async def test_an_email_search_looks_for_its_users_id_and_an_unknown_email_finds_nothing():
    buyer = new_user(Role.BUYER, email="buyer@example.com")
    users = FakeUserRepository({buyer.id: buyer})
    store = FakeSessionStore()
    await store.write([entry("theirs", 1, user_id=buyer.id), entry("anonymous", 2)], [])
    found = await use_cases.find_sessions(
        SessionFilter(), 20, None, email=" Buyer@Example.com", store=store, users=users
    )
    assert [s.session_id for s in found.items] == ["theirs"]
    nobody = await use_cases.find_sessions(
        SessionFilter(), 20, None, email="x@example.com", store=store, users=users
    )
    assert list(nobody.items) == []
    other_user = SessionFilter(user_id="someone-else")
    assert not (
        await use_cases.find_sessions(other_user, 20, None, email=buyer.email, store=store, users=users)
    ).items
    # the same user, their id typed in capitals: the e-mail agrees with it
    same_user = SessionFilter(user_id=buyer.id.upper())
    found = await use_cases.find_sessions(same_user, 20, None, email=buyer.email, store=store, users=users)
    assert [s.session_id for s in found.items] == ["theirs"]


async def test_an_unknown_or_malformed_session_is_not_found():
    with pytest.raises(NotFound):
        await use_cases.session_timeline("nobody", store=FakeSessionStore())
    with pytest.raises(NotFound):
        await use_cases.session_timeline("not a session id!", store=FakeSessionStore())


async def test_pruning_forgets_what_is_older_than_the_retention():
    store, clock = FakeSessionStore(), FakeClock(NOW, step=timedelta(0))
    await store.write([entry("old", -31 * 86400), entry("new", -29 * 86400)], [])
    assert await use_cases.prune_sessions(timedelta(days=30), store=store, clock=clock) == 1
    assert store.pruned_before == [NOW - timedelta(days=30)]


def record(recording: SessionRecording, session: str = "s", status: int = 200) -> None:
    recording.record_request(
        session, NOW.timestamp(), "GET", "/api/v1/items", status, 0.002, "a" * 32, None, None, None
    )


async def test_the_buffer_is_bounded_and_counts_what_it_drops():
    tally = DropTally()
    store = FakeSessionStore()
    recording = SessionRecording(store, retention=timedelta(days=30), capacity=3, tally=tally)
    for _ in range(5):
        record(recording)
    assert recording.pending() == 3 and tally.totals()[SESSIONS] == 2
    assert store.requests == []  # nothing written on the request path
    assert await recording.flush() == 3
    assert [(e.at, e.duration_ms) for e in store.requests] == [(NOW, 2.0)] * 3
    assert recording.pending() == 0


async def test_a_batch_the_database_refuses_is_dropped_and_counted_not_retried_forever():
    tally = DropTally()
    store = FakeSessionStore()
    store.fail = True
    recording = SessionRecording(store, retention=timedelta(days=30), tally=tally)
    record(recording)
    record(recording)
    assert await recording.flush() == 0
    assert tally.totals()[SESSIONS] == 2 and recording.pending() == 0


async def test_stop_writes_what_is_buffered():
    store = FakeSessionStore()
    recording = SessionRecording(store, retention=timedelta(days=30), flush_interval_s=3600)
    recording.start()
    record(recording, "last")
    await recording.stop()
    assert [e.session_id for e in store.requests] == ["last"]


def test_recording_an_entry_leaves_no_object_for_the_garbage_collector_to_count():
    # An entry kept as its own container (a tuple) counts towards the next collection until written: 2 000
    # of them a second made the collector run several times as often (benchmarks/session_recording.py).
    recording = SessionRecording(FakeSessionStore(), retention=timedelta(days=30), capacity=10_000)
    gc.disable()
    try:
        before = gc.get_count()[0]
        for n in range(1000):
            recording.record_request(
                "s", NOW.timestamp(), "GET", "/api/v1/items", 200, 0.002, f"{n:032x}", None, None, None
            )
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert recording.pending() == 1000
    assert grown < 100


class _KeepsTheBatch:
    def __init__(self) -> None:
        self.batches: list[Sequence[RequestEntry]] = []

    async def write(self, requests: Sequence[RequestEntry], events: Sequence[ClientEvent]) -> None:
        self.batches.append(requests)

    async def prune(self, older_than: datetime) -> int:
        return 0


async def test_a_batch_reads_as_the_sequence_of_entries_recorded_in_order():
    store = _KeepsTheBatch()
    recording = SessionRecording(store, retention=timedelta(days=30))
    for n, status in enumerate((200, 404, 500)):
        recording.record_request(
            f"s{n}", NOW.timestamp() + n, "GET", None, status, 0.5, "a" * 32, "about:blank", "e" * 32, "u"
        )
    assert await recording.flush() == 3
    (batch,) = store.batches
    assert len(batch) == 3
    assert [e.session_id for e in batch] == ["s0", "s1", "s2"]
    assert batch[-1] == RequestEntry(
        "s2", NOW + timedelta(seconds=2), "GET", None, 500, 500.0, "a" * 32, "about:blank", "e" * 32, "u"
    )
    assert batch[0].at == NOW and batch[1].status == 404
    assert [e.session_id for e in batch[1:]] == ["s1", "s2"]
    with pytest.raises(IndexError):
        batch[3]


def test_the_session_page_escapes_what_a_client_reported_and_links_out_only_where_configured():
    from market.adapters.http.dashboard_sessions import timeline_rows
    from market.adapters.http.sessions import SessionLinks
    from market.adapters.http.templating import template_engine
    from market.domain.sessions import Timeline, TimelineEntry

    script = "<script>alert('owned')</script>"
    timeline = Timeline(
        "s-1",
        None,
        NOW,
        NOW + timedelta(seconds=2),
        [
            TimelineEntry(
                NOW, "event", {"name": "page_view", "source": "client", "trace_id": None, "note": script}
            ),
            TimelineEntry(
                NOW + timedelta(seconds=1),
                "request",
                {
                    "method": "GET",
                    "route": "/api/v1/items",
                    "status": 200,
                    "duration_ms": 10.0,
                    "trace_id": "a" * 32,
                    "problem_type": None,
                    "sentry_event_id": None,
                },
            ),
            TimelineEntry(
                NOW + timedelta(seconds=2),
                "request",
                {
                    "method": "POST",
                    "route": "/api/v1/checkout",
                    "status": 500,
                    "duration_ms": 40.0,
                    "trace_id": "b" * 32,
                    "problem_type": "https://market.dev/problems/internal-error",
                    "sentry_event_id": "c" * 32,
                },
            ),
        ],
    )
    links = SessionLinks("http://tempo.example/trace/{trace_id}", None)
    rows = timeline_rows(timeline, links)
    assert [(r.kind, r.failing, r.bar) for r in rows] == [
        ("event", False, 0),
        ("request", False, 25.0),
        ("request", True, 100.0),
    ]
    page = (
        template_engine()
        .get_template("session.html")
        .render(email="admin@example.com", csrf_token="t", timeline=timeline, rows=rows, failures=1)
    )
    assert "<script" not in page and "&lt;script&gt;" in page
    assert 'href="http://tempo.example/trace/' + "b" * 32 + '"' in page
    assert 'data-testid="failing-request"' in page
    assert "sentry-link" not in page  # no MARKET_SENTRY_URL_TEMPLATE: the id, without a link
    assert "c" * 32 in page


async def test_client_events_share_the_capacity_and_are_written_with_the_entries_or_dropped_with_them():
    tally = DropTally()
    store = FakeSessionStore()
    recording = SessionRecording(store, retention=timedelta(days=30), capacity=3, tally=tally)
    two = parse(*[{"at": "2026-11-28T11:59:00Z", "name": "page_view"}] * 2)
    assert recording.record_events(two)
    record(recording)
    record(recording)  # no room: two events and one entry fill the capacity
    assert not recording.record_events(two[:1])  # all or none, and counted
    assert recording.pending() == 3 and tally.totals()[SESSIONS] == 2
    assert await recording.flush() == 3
    assert len(store.requests) == 1 and len(store.events) == 2
    assert recording.record_events(two) and recording.pending() == 2  # the capacity is whole again
    store.fail = True
    record(recording)
    assert await recording.flush() == 0
    assert tally.totals()[SESSIONS] == 5 and recording.pending() == 0
