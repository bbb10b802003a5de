"""Analytics rollups that stay flat in volume (adapters/db/rollups.py): per day, the sums the reports need of the
sessions seen on that day alone (nearly all), so that a 30-day report reads about thirty rows per figure instead of
one per session; the per-session rows of m0010 stay, read only through indexes for the few sessions that cross
midnight or come back in a report's raw edges.

- `analytics_day_totals`: per day, its sessions alone on it, their events, and how many took each funnel step.
- `analytics_duration_days`: per day and whole second of duration, how many such sessions lasted that long (the
  sessions report finds the bucket its percentiles fall in, then reads that bucket's exact durations through
  `analytics_session_days.bucket`).
- `analytics_item_view_days` / `analytics_seller_view_days`: per day and item, and per day and seller, the views
  (of every session) and the viewers alone on that day.

The rollups of m0010 are emptied: the background pass computes every closed day again, with these."""

from .runner import Migration


def _statements() -> list[str]:
    return [
        "DELETE FROM analytics_session_days",
        "DELETE FROM analytics_search_days",
        "DELETE FROM analytics_view_days",
        "DELETE FROM analytics_rollup_days",
        "DELETE FROM analytics_rollup_state",
        "ALTER TABLE analytics_session_days ADD COLUMN bucket INTEGER",
        "CREATE INDEX analytics_session_days_crossing_idx ON analytics_session_days (day) WHERE alone = 0",
        "CREATE INDEX analytics_session_days_bucket_idx ON analytics_session_days (bucket, day) WHERE alone = 1",
        "CREATE INDEX analytics_view_days_session_idx ON analytics_view_days (session_id, day)",
        "CREATE TABLE analytics_day_totals (day VARCHAR(10) PRIMARY KEY, sessions BIGINT NOT NULL,"
        " events BIGINT NOT NULL, browsed BIGINT NOT NULL, carted BIGINT NOT NULL, started BIGINT NOT NULL,"
        " paid BIGINT NOT NULL)",
        "CREATE TABLE analytics_duration_days (day VARCHAR(10) NOT NULL, bucket INTEGER NOT NULL,"
        " sessions BIGINT NOT NULL, PRIMARY KEY (day, bucket))",
        "CREATE TABLE analytics_item_view_days (day VARCHAR(10) NOT NULL, seller_id UUID NOT NULL,"
        " item_id UUID NOT NULL, views BIGINT NOT NULL, viewers BIGINT NOT NULL,"
        " PRIMARY KEY (seller_id, day, item_id))",
        "CREATE TABLE analytics_seller_view_days (day VARCHAR(10) NOT NULL, seller_id UUID NOT NULL,"
        " views BIGINT NOT NULL, viewers BIGINT NOT NULL, PRIMARY KEY (seller_id, day))",
    ]


MIGRATION = Migration(
    version="0011_analytics_day_totals",
    postgresql=_statements(),
    sqlite=_statements(),
)
