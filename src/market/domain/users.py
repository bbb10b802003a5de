"""Accounts and roles."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib import resources

from .validation import FieldErrors

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # argon2 accepts more, but nobody types this much; it bounds hashing cost
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is proven by mail, not regex.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_EMAIL = re.compile(EMAIL_PATTERN)


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    ADMIN = "admin"


SELF_SERVICE_ROLES = (Role.BUYER, Role.SELLER)  # admins are made by an operator, never by registration


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    display_name: str
    role: Role
    password_hash: str = field(repr=False)
    created_at: datetime
    token_version: int = 0  # a counter (not a secret): bumping it revokes tokens
    """Every token carries the version it was issued under; bumping it revokes all tokens issued so far."""
    status: UserStatus = UserStatus.ACTIVE
    last_login_at: datetime | None = None

    def accepts_token(self, token_version: int) -> bool:
        """Whether a token issued under `token_version` still signs this user in: not revoked since (password
        change, sign-out everywhere, disabling) and the account is active."""
        return self.status is UserStatus.ACTIVE and token_version == self.token_version


def normalise_email(email: str) -> str:
    """E-mail addresses compare case-insensitively here (as every mail provider users meet does)."""
    return email.strip().lower()


def normalise_password(password: str) -> str:
    """The form a password is hashed and checked in: Unicode NFC. The same password typed on two keyboards (or
    systems) can reach us composed ("é") or decomposed ("e" + combining accent); both must sign in."""
    return unicodedata.normalize("NFC", password)


def validate_new_password(password: object, field: str = "password", *, current: object = None) -> None:
    """Raise `ValidationFailed` naming `field` when `password` breaks the password rules, or is `current` (the
    password it replaces, as the user typed it): a "change" that keeps the old password protects nothing."""
    errors = FieldErrors()
    if (problem := password_problem(password)) is not None:
        errors.add(field, problem)
    elif (
        isinstance(password, str)
        and isinstance(current, str)
        and normalise_password(password) == normalise_password(current)
    ):
        errors.add(field, "must differ from the current password")
    errors.raise_if_any()


def validate_registration(
    email: object, password: object, display_name: object, role: object, *, allow_admin: bool = False
) -> None:
    """Raise `ValidationFailed` naming every field that breaks the account rules."""
    errors = FieldErrors()
    if (
        not isinstance(email, str)
        # Measured as stored: lower case can lengthen it ("İ" is two characters in lower case).
        or len(normalise_email(email)) > MAX_EMAIL_LENGTH
        or "\x00" in email
        or not _EMAIL.match(email.strip())
    ):
        errors.add("email", "must be an e-mail address")
    if (problem := password_problem(password)) is not None:
        errors.add("password", problem)
    errors.check_text("display_name", display_name, min_len=1, max_len=100)
    allowed = tuple(Role) if allow_admin else SELF_SERVICE_ROLES
    if role not in allowed:
        errors.add("role", "must be one of " + ", ".join(allowed))
    errors.raise_if_any()


def password_problem(password: object) -> str | None:
    """Why `password` is not acceptable for an account (in words for the person choosing it), or None.

    Length alone lets through what every guessing attack tries first: the most common passwords (whatever
    their case) and one character repeated. Measured as hashed (`normalise_password`)."""
    if isinstance(password, str):
        password = normalise_password(password)
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    if len(set(password)) == 1:
        return "must not be one character repeated"
    if password.lower() in common_passwords():
        return "is one of the most commonly used passwords; choose another"
    return None


@cache
def common_passwords() -> frozenset[str]:
    """The bundled top-10,000 list (lower-case), read on first use and kept: see common_passwords.txt."""
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))
