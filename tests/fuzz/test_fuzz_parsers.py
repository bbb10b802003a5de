"""Every parser of untrusted input answers with a value or its own error, never another exception: cursors,
report periods, webhook signature headers, Stripe event bodies and backup manifests."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from market.adapters.db.cursors import decode_cursor, decode_keyset_cursor, encode_keyset_cursor
from market.adapters.db.search import _search_offset
from market.adapters.payments.signature import InvalidSignature, sign, verify
from market.adapters.payments.stripe import InvalidStripeEvent, parse_stripe_event
from market.domain.analytics import EARLIEST, LATEST, MAX_PERIOD, parse_period
from market.domain.errors import InvalidCursor, ValidationFailed
from market.ops.backups.errors import BackupError
from market.ops.backups.manifest import FORMAT_VERSION, Manifest

pytestmark = pytest.mark.fuzz

NOW = datetime(2026, 11, 28, 13, 33, 41, tzinfo=UTC)
ID = "0b7c3a6e-5d2f-4f1e-9a8b-7c6d5e4f3a2b"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- cursors -----------------------------------------------------------------------------------------------

CURSORS = st.one_of(
    st.text(),
    st.binary().map(_b64),
    JSON.map(lambda value: _b64(json.dumps(value).encode())),
    # Our own shape, with any values in it.
    st.fixed_dictionaries({"s": st.sampled_from(["items:x", "other"]), "t": JSON, "id": JSON, "o": JSON}).map(
        lambda value: _b64(json.dumps(value).encode())
    ),
    st.builds(
        lambda t, row_id: _b64(json.dumps({"s": "items:x", "t": t, "id": row_id}).encode()),
        st.datetimes(timezones=st.timezones() | st.just(timezone(timedelta(hours=14)))).map(
            datetime.isoformat
        ),
        st.sampled_from([ID, "x", ""]),
    ),
    st.integers(1, 20_000).map(lambda depth: _b64(_nested(depth))),
)


@given(cursor=CURSORS)
@example(cursor=_b64(_nested(5_000)))
@example(cursor=_b64(json.dumps({"s": "items:x", "t": "0001-01-01T00:00:00+14:00", "id": ID}).encode()))
def test_any_cursor_decodes_or_is_invalid(cursor):
    for decode in (decode_cursor, decode_keyset_cursor, _search_offset):
        with contextlib.suppress(InvalidCursor):
            decode(cursor, "items:x")


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
def test_every_cursor_we_issue_decodes_to_its_position(moment):
    assert decode_keyset_cursor(encode_keyset_cursor("items:x", moment, ID), "items:x") == (moment, ID)


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
def test_cursors_are_written_as_before_so_pages_in_flight_keep_working(moment):
    """The compact JSON `json` wrote before msgspec did: a client holding a cursor across a deploy gets its next
    page, and a cursor issued now is the same string an older replica would have issued."""
    before = _b64(
        json.dumps({"s": "items:x", "t": moment.isoformat(), "id": ID}, separators=(",", ":")).encode()
    )
    assert encode_keyset_cursor("items:x", moment, ID) == before


# --- report periods ----------------------------------------------------------------------------------------

TIMESTAMPS = st.one_of(
    st.none(),
    st.text(max_size=64),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=-23, minutes=-59)))).map(datetime.isoformat),
    st.dates().map(lambda day: day.isoformat()),
    st.sampled_from(["0001-01-01", "9999-12-31", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]),
)


@given(raw_from=TIMESTAMPS, raw_to=TIMESTAMPS)
@example(raw_from=None, raw_to="0001-01-05T00:00:00Z")
@example(raw_from="9999-12-31", raw_to="9999-12-31T23:59:59Z")
def test_any_period_parses_within_bounds_or_names_its_bad_field(raw_from, raw_to):
    try:
        period = parse_period(raw_from, raw_to, NOW)
    except ValidationFailed as exc:
        assert {error.field for error in exc.errors} <= {"from", "to"} and exc.errors
        return
    assert EARLIEST <= period.start <= period.end < LATEST
    assert period.end - period.start <= MAX_PERIOD
    period.end + timedelta(days=30)  # the windows reports add after the end stay representable


# --- webhook signatures ------------------------------------------------------------------------------------

SECRET = "whsec_fuzz"
HEADERS = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet="tv01=,abcdef9 é\x00-_", max_size=300),
    st.builds(
        lambda t, v1: f"t={t},v1={v1}",
        # Now (inside the tolerance, so the digests get compared), any integer, huge ones, or any text.
        st.builds(lambda: int(time.time()))
        | st.integers()
        | st.integers(min_value=10**300)
        | st.text(max_size=20),
        st.text(max_size=80) | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    ),
)


@given(header=HEADERS, body=st.binary(max_size=200))
@example(header=f"t={'9' * 400},v1={'0' * 64}", body=b"{}")
@example(header=f"t={int(time.time())},v1=é", body=b"{}")
def test_any_signature_header_verifies_or_is_an_invalid_signature(header, body):
    try:
        verify(SECRET, body, header)
    except InvalidSignature:
        return
    assert header == sign(SECRET, body, int(header.split(",")[0][2:]))  # only a real signature gets through


@given(body=st.one_of(st.binary(), JSON.map(lambda v: json.dumps(v).encode()), st.just(_nested(100_000))))
def test_any_stripe_event_body_is_parsed_or_refused(body):
    with contextlib.suppress(InvalidStripeEvent):
        parse_stripe_event(body)


# --- backup manifests ----------------------------------------------------------------------------------------

VALID = {
    "format_version": FORMAT_VERSION,
    "created_at": "2026-11-28T13:33:41Z",
    "engine": "sqlite",
    "server_version": "3.45.1",
    "database": "market.db",
    "migration_head": "0003_analytics",
    "app_version": "0.1.0",
    "duration_s": 1.5,
    "tables": {"items": 3},
    "files": {"database.sqlite": "a" * 64},
}
MANIFESTS = st.one_of(
    st.binary(),
    JSON.map(lambda v: json.dumps(v).encode()),
    # A valid manifest with some of its values replaced by anything.
    st.dictionaries(st.sampled_from(sorted(VALID)), JSON | st.integers(min_value=10**300)).map(
        lambda changes: json.dumps({**VALID, **changes}).encode()
    ),
    st.sampled_from(sorted(VALID)).map(lambda key: json.dumps({k: v for k, v in VALID.items() if k != key})),
    st.integers(1, 200_000).map(_nested),
)


@given(raw=MANIFESTS)
@example(raw=json.dumps({**VALID, "duration_s": 10**400}).encode())
@example(raw=json.dumps({**VALID, "created_at": "0001-01-01T00:00:00+01:00"}).encode())
def test_any_manifest_is_read_or_refused_with_a_backup_error(raw):
    try:
        manifest = Manifest.from_json(raw, "market-x.tar.gz")
    except BackupError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("market-x.tar.gz: ")
        return
    assert Manifest.from_json(manifest.to_json(), "again").tables == manifest.tables
