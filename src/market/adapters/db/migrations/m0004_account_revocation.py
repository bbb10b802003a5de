"""Revocable tokens and disabled accounts: each user's token version (every token carries the version it was
issued under; bumping it revokes them all), an account status, and the time of the latest sign-in. Existing
accounts start active, at version 0, never signed in."""

from .runner import Migration

_STATEMENTS = [
    "ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0 CHECK (token_version >= 0)",
    "ALTER TABLE users ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active'"
    " CHECK (status IN ('active', 'disabled'))",
    "ALTER TABLE users ADD COLUMN last_login_at TIMESTAMPTZ",
]

MIGRATION = Migration(version="0004_account_revocation", postgresql=_STATEMENTS, sqlite=_STATEMENTS)
