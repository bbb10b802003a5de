"""Session replay: what a session did, request by request, beside its business events.

A session is one `X-Session-Id`. Its timeline holds compact request entries (never bodies, query strings,
headers, tokens or e-mails), the business events of the analytics log, and the events its own client reported
(page views, client-side errors). Everything here is plain data and the rules on client-reported events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import FieldError, ValidationFailed
from .redaction import FILTERED, filtered_text, names_a_secret
from .validation import iso_datetime

SESSION_ID = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9._-]{1,64}\Z")
"""What a session id is (the contract's `X-Session-Id`), short of `.` and `..`: those cannot be one segment of a
path (clients and proxies resolve them away), so the session's admin page and event endpoint could not be named.
Anything else (an id that is not this) is replaced by a new id at the edge, as the contract says."""
EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._:-]{0,63}$")
MAX_CLIENT_EVENTS = 20
"""Events in one `POST /sessions/{session_id}/events` batch."""
MAX_EVENT_FIELDS = 10
MAX_FIELD_NAME = 32
MAX_FIELD_TEXT = 200
CLIENT_EVENT_PAST = timedelta(hours=24)
CLIENT_EVENT_FUTURE = timedelta(minutes=5)
RESERVED_FIELDS = frozenset({"at", "kind", "name"})


def valid_session_id(value: str) -> bool:
    return bool(SESSION_ID.match(value))


@dataclass(slots=True)  # not frozen: one is made per request, and a frozen one costs 6x as much to build
class RequestEntry:
    """One request of a session, as recorded at the edge. `route` is the template (None: no route matched).
    Treat as immutable."""

    session_id: str
    at: datetime
    method: str
    route: str | None
    status: int
    duration_ms: float
    trace_id: str
    problem_type: str | None = None
    sentry_event_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """An event the session's own client reported (what the shopper saw)."""

    session_id: str
    at: datetime
    name: str
    fields: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    trace_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a timeline: `kind` is `request` or `event`; `fields` are the entry's own fields."""

    at: datetime
    kind: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    requests: int
    errors: int
    """Requests answered with a 5xx (a 4xx such as a declined card is an outcome, not an error)."""
    last_route: str | None


@dataclass(frozen=True, slots=True)
class Timeline:
    session_id: str
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    entries: Sequence[TimelineEntry]


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """What `GET /admin/sessions` searches by; every given criterion must hold. `email` is resolved to a user
    id before it reaches the store."""

    user_id: str | None = None
    order_id: str | None = None
    trace_id: str | None = None
    has_errors: bool | None = None
    start: datetime | None = None
    end: datetime | None = None


def timeline_order(entry: TimelineEntry) -> tuple[datetime, int]:
    """Time order; at the same instant a request comes before the events it caused."""
    return entry.at, 0 if entry.kind == "request" else 1


def parse_client_events(
    raw: Any, *, session_id: str, now: datetime, trace_id: str | None, user_id: str | None
) -> list[ClientEvent]:
    """The client events of a `{events: [{at, name, ...}]}` body, or ValidationFailed naming each bad field.

    Bounded: at most MAX_CLIENT_EVENTS events of at most MAX_EVENT_FIELDS flat fields (text, numbers,
    booleans, null); `at` within the last day (and not in the future beyond a little clock skew). E-mail
    addresses and token-like strings in text fields, and the value of any field whose name names a secret
    (redaction.SECRET_WORDS), are replaced by `[Filtered]`: the timeline keeps no personal data or secrets,
    whatever a client sends."""
    errors: list[FieldError] = []
    events = raw.get("events") if isinstance(raw, dict) else None
    if not isinstance(events, list) or not events:
        raise ValidationFailed([FieldError("events", "must be a non-empty list")])
    if len(events) > MAX_CLIENT_EVENTS:
        raise ValidationFailed([FieldError("events", f"at most {MAX_CLIENT_EVENTS} events per batch")])
    parsed: list[ClientEvent] = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            errors.append(FieldError(where, "must be an object"))
            continue
        name = event.get("name")
        if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
            errors.append(FieldError(f"{where}.name", "must be 1-64 letters, digits, '.', '_', ':' or '-'"))
        at = _client_time(event.get("at"), now)
        if at is None:
            errors.append(FieldError(f"{where}.at", "must be an RFC 3339 time within the last 24 hours"))
        extra = {k: v for k, v in event.items() if k not in ("at", "name")}
        fields, problems = _client_fields(extra)
        errors += [FieldError(f"{where}.{key}", message) for key, message in problems]
        if not errors and at is not None and isinstance(name, str):
            parsed.append(ClientEvent(session_id, at, name, fields, trace_id, user_id))
    if errors:
        raise ValidationFailed(errors, "Some events are not valid; see errors.")
    return parsed


def _client_time(raw: Any, now: datetime) -> datetime | None:
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        at = iso_datetime(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None or not now - CLIENT_EVENT_PAST <= at <= now + CLIENT_EVENT_FUTURE:
        return None
    return at


def _client_fields(extra: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The event's own fields, and a (field, message) for each bad one."""
    if len(extra) > MAX_EVENT_FIELDS:
        return {}, [("fields", f"at most {MAX_EVENT_FIELDS} fields besides `at` and `name`")]
    fields: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in extra.items():
        # fullmatch: `$` would also let a final newline through, which the schema's (ECMA) pattern refuses.
        if not EVENT_NAME.fullmatch(key) or len(key) > MAX_FIELD_NAME or key in RESERVED_FIELDS:
            problems.append(
                (key[:MAX_FIELD_NAME], "field names are 1-32 letters, digits, '.', '_', ':' or '-'")
            )
        elif isinstance(value, str):
            if len(value) > MAX_FIELD_TEXT:
                problems.append((key, f"text fields hold at most {MAX_FIELD_TEXT} characters"))
            elif "\x00" in value:  # refused like NUL in any other text the service keeps
                problems.append((key, "must not contain NUL characters"))
            else:
                fields[key] = filtered_text(value)
        elif value is None or isinstance(value, bool | int | float):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
                problems.append((key, "numbers must be within ±2^53"))
            elif isinstance(value, float) and value != value:  # NaN cannot come from JSON, but be sure
                problems.append((key, "must be a number"))
            else:
                fields[key] = value
        else:
            problems.append((key, "must be text, a number, a boolean or null"))
        # `password`, `card_number`, `api_key`: whatever such a field holds, its value is not kept.
        if fields.get(key) is not None and names_a_secret(key):
            fields[key] = FILTERED
    return fields, problems
