"""The sessions seen on the days not rolled up yet (adapters/db/rollups.py, `AnalyticsRollups.mark_open`): per such
day, each session the background pass has seen in its events so far, and the rolled-up day it was then alone on
(`alone_day`, NULL for nearly all). A report whose raw edge holds a session recorded without one need not look it
up in the day rollups: late in the UTC day the tail edge holds ≈ a day of sessions, and looking each up in the
session index was most of what was left of a 30-day report (figures: benchmarks/README.md, 2026-12-05).
The pass's watermark for these is the row `id = 2` of `analytics_rollup_state`."""

from .runner import Migration

_BOTH = [
    "CREATE TABLE analytics_open_sessions (day VARCHAR(10) NOT NULL, session_id VARCHAR(64) NOT NULL,"
    " alone_day VARCHAR(10), PRIMARY KEY (day, session_id))",
]

MIGRATION = Migration(version="0014_analytics_open_sessions", postgresql=_BOTH, sqlite=_BOTH)
