"""Opaque pagination cursors. A cursor is bound to a `scope` (which list, with which filter), so one issued
for another list is refused instead of silently paging something else."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from market.domain.errors import InvalidCursor
from market.domain.validation import parse_id

MAX_CURSOR_LENGTH = 512
"""Longer than any cursor we issue (a scope, a timestamp and an id: about 150 characters). Longer strings are
refused before decoding, which also keeps JSON nesting far from the recursion limit."""
# Compact JSON, as `json` with separators=(",", ":") wrote it, at a third of the cost (1.8 µs a cursor against
# 4.6, on every browse page that has a next one); cursors issued before still decode.
_ENCODER = msgspec.json.Encoder()


def encode_cursor(scope: str, position: dict[str, Any]) -> str:
    payload = _ENCODER.encode({"s": scope, **position})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: str) -> dict[str, Any] | None:
    """The position in a cursor we issued for `scope`; None for no cursor; InvalidCursor otherwise."""
    if not cursor:  # absent or empty: the first page
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor()
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # ValueError covers JSON and UTF-8 errors
        raise InvalidCursor() from None
    if not isinstance(payload, dict) or payload.get("s") != scope:
        raise InvalidCursor()
    return payload


def encode_keyset_cursor(scope: str, created_at: datetime, row_id: str) -> str:
    """A cursor for lists ordered by (created_at, id) descending."""
    return encode_cursor(scope, {"t": created_at.isoformat(), "id": row_id})


def decode_keyset_cursor(cursor: str | None, scope: str) -> tuple[datetime, str] | None:
    position = decode_cursor(cursor, scope)
    if position is None:
        return None
    try:
        created_at = datetime.fromisoformat(position["t"])
        row_id = position["id"]
        # In UTC, as the drivers send it: an offset that moves it past year 1 or 9999 is refused here.
        created_at = created_at.astimezone(UTC) if created_at.tzinfo is not None else created_at
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InvalidCursor() from None
    if not isinstance(row_id, str) or parse_id(row_id) is None or created_at.tzinfo is None:
        raise InvalidCursor()
    return created_at, row_id
