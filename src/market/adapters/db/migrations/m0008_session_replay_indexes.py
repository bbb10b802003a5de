"""Session replay's searches at scale: the dashboard's "latest sessions that hit a 5xx" reads a few rows through a
partial index instead of the whole period, and a trace id also finds the session of a business event whose
request was not recorded (a provider's webhook settling a payment carries the checkout's session and its own
trace)."""

from .runner import Migration

_STATEMENTS = [
    "CREATE INDEX session_entries_failures_idx ON session_entries (at) WHERE status >= 500",
    "CREATE INDEX analytics_events_trace_idx ON analytics_events (trace_id)",
]

MIGRATION = Migration(version="0008_session_replay_indexes", postgresql=_STATEMENTS, sqlite=_STATEMENTS)
