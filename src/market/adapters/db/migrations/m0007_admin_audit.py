"""The audit trail of admin writes: one row per write, appended in the same transaction as the change.
`details` is a JSON object of plain values (never a secret). Newest-first lists by actor, target and action
follow the indexes.

Moderation: an item the marketplace suspends keeps `status = 'archived'` (hidden wherever archived items are)
with `suspended_at` and `moderation_reason` set; the repository reads it back as `suspended`. SQLite cannot
change the status CHECK constraint without rebuilding the items table and its search index, and the same
representation on both engines keeps one set of queries."""

from .runner import Migration

_STATEMENTS = [
    """
    CREATE TABLE audit_log (
        id UUID PRIMARY KEY,
        at TIMESTAMPTZ NOT NULL,
        actor_id UUID NOT NULL REFERENCES users (id),
        action VARCHAR(64) NOT NULL,
        target_type VARCHAR(32) NOT NULL,
        target_id VARCHAR(64) NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        trace_id VARCHAR(32)
    )
    """,
    "CREATE INDEX audit_log_recent_idx ON audit_log (at DESC, id DESC)",
    "CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at DESC, id DESC)",
    "CREATE INDEX audit_log_target_idx ON audit_log (target_id, at DESC, id DESC)",
    "CREATE INDEX users_recent_idx ON users (created_at DESC, id DESC)",
    "ALTER TABLE items ADD COLUMN suspended_at TIMESTAMPTZ",
    "ALTER TABLE items ADD COLUMN moderation_reason VARCHAR(500)",
]

MIGRATION = Migration(version="0007_admin_audit", postgresql=_STATEMENTS, sqlite=_STATEMENTS)
