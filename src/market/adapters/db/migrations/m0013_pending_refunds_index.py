"""Pending refunds by their own index: the reconciler asks every minute, in every worker, for the refunds still
`pending` (those of the last 24 h to settle, and the count of older ones for `market.refunds.stuck`). Through an
index on every refund's `created_at` each pass walked all the refunds older than 24 h to find the few still
pending; a partial index holds only the pending ones, so the pass reads those alone however many refunds the
shop has made (figures: benchmarks/README.md, "Figures behind choices in the code"). The index it replaces
served only those two queries."""

from .runner import Migration

_BOTH = [
    "DROP INDEX refunds_recent_idx",
    "CREATE INDEX refunds_pending_idx ON refunds (created_at) WHERE status = 'pending'",
]

MIGRATION = Migration(version="0013_pending_refunds_index", postgresql=_BOTH, sqlite=_BOTH)
