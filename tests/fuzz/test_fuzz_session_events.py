"""Session replay's client events and cursors: whatever a client sends, a list of events or ValidationFailed
(a 422), never another exception; nothing kept holds an e-mail address."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.adapters.db.sessions import _cursor_position
from market.domain.errors import InvalidCursor, ValidationFailed
from market.domain.redaction import EMAIL
from market.domain.sessions import MAX_CLIENT_EVENTS, MAX_FIELD_TEXT, parse_client_events

pytestmark = pytest.mark.fuzz

NOW = datetime(2026, 11, 28, 13, 33, 41, tzinfo=UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
EVENT = st.fixed_dictionaries(
    {
        "at": st.one_of(st.text(max_size=40), st.datetimes(timezones=st.timezones()).map(datetime.isoformat)),
        "name": st.one_of(
            st.text(max_size=70), st.from_regex(r"[A-Za-z][A-Za-z0-9._:-]{0,63}", fullmatch=True)
        ),
    },
    optional={
        "note": st.one_of(st.text(max_size=MAX_FIELD_TEXT + 5), st.emails()),
        "n": st.one_of(st.integers(), st.floats()),
        "x": JSON,
    },
)


@given(st.one_of(JSON, st.fixed_dictionaries({"events": st.lists(EVENT, max_size=MAX_CLIENT_EVENTS + 2)})))
def test_any_body_gives_events_or_a_validation_error(body):
    try:
        events = parse_client_events(body, session_id="s", now=NOW, trace_id=None, user_id=None)
    except ValidationFailed as exc:
        assert exc.errors
        return
    assert 1 <= len(events) <= MAX_CLIENT_EVENTS
    for event in events:
        assert not any(EMAIL.search(v) for v in event.fields.values() if isinstance(v, str)), event.fields
        assert json.dumps(dict(event.fields))  # storable as it is
        assert not any("\x00" in v for v in event.fields.values() if isinstance(v, str)), event.fields


@given(JSON)
def test_any_cursor_position_is_a_position_or_invalid_cursor(position):
    payload = position if isinstance(position, dict) else {"t": position, "id": position}
    with contextlib.suppress(InvalidCursor):  # the only way to refuse it
        _cursor_position(payload)


def test_a_cursor_of_another_list_is_refused():
    from market.adapters.db.cursors import decode_cursor

    other = base64.urlsafe_b64encode(json.dumps({"s": "items:x"}).encode()).decode().rstrip("=")
    with pytest.raises(InvalidCursor):
        decode_cursor(other, "sessions")
