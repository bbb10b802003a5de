"""Checks of input: field errors collected so a client learns about every bad field at once, not one per
round trip, and the one strict reading of ISO timestamps."""

from __future__ import annotations

import uuid
from datetime import datetime

from .errors import FieldError, ValidationFailed


def parse_id(value: str) -> str | None:
    """The canonical form of a UUID (as stored: lower case, hyphens), or None for anything that is not one (a
    malformed id is a 404). Ids typed in capitals or braces are the same id."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def iso_datetime(raw: str) -> datetime:
    """`datetime.fromisoformat` of the whole of `raw`: CPython's reads a string only up to its first NUL, so
    `2026-12-01T00:00:00Z\\x00` (or `...T00:00:00\\x00+05:00`) would pass. Timestamps are printable ASCII;
    anything else is refused first. Raises ValueError."""
    if not (raw.isascii() and raw.isprintable()):
        raise ValueError("a timestamp holds printable ASCII only")
    return datetime.fromisoformat(raw)


class FieldErrors:
    """Accumulates `FieldError`s; `raise_if_any()` turns them into one `ValidationFailed`."""

    def __init__(self) -> None:
        self._errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self._errors.append(FieldError(field, message))

    def check_text(self, field: str, value: object, *, min_len: int, max_len: int) -> None:
        """A string whose stripped length lies in [min_len, max_len]."""
        if not isinstance(value, str):
            self.add(field, "must be text")
        elif "\x00" in value:
            self.add(field, "must not contain NUL characters")
        elif not min_len <= len(value.strip()) <= max_len:
            self.add(field, f"must be {min_len} to {max_len} characters")

    def check_count(self, field: str, value: object, *, minimum: int = 0, maximum: int = 2**31 - 1) -> None:
        """A whole number (never a bool or float) in [minimum, maximum]."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, "must be a whole number")
        elif not minimum <= value <= maximum:
            self.add(field, f"must be between {minimum} and {maximum}")

    def raise_if_any(self) -> None:
        if self._errors:
            raise ValidationFailed(list(self._errors))
