"""The analytics rollups (adapters/db/rollups.py), on both engines: the funnel, search and sessions reports and the
seller dashboard read from the rollups for whole closed days and raw events for the edges give exactly the
figures of the raw events, for random sessions that cross midnight, periods that start and end mid-day, late
events written into a day already rolled up, and retention."""

from __future__ import annotations

import random
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from market.adapters.db.analytics import SqlAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.commerce import SqlOrderRepository
from market.adapters.db.rollups import CLOSE_DELAY, DAY, ROLLUP_TABLES, Split
from market.domain.analytics import Period
from market.domain.events import CartChanged, CheckoutStarted, ItemViewed, OrderPaid, SearchPerformed
from market.domain.orders import OrderStatus
from market.domain.users import Role
from market.telemetry import request_context
from tests.support.database import add_item, add_user, count
from tests.support.factories import new_order

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)  # a midnight
DAYS = 5
NOW = DAY0 + timedelta(days=DAYS) + CLOSE_DELAY + timedelta(minutes=1)  # days 0 .. DAYS-1 are closed
QUERIES = ("mug", "cup", "hat", "lamp")


@contextmanager
def request(session_id: str | None):
    token = request_context.begin(session_id, None)
    try:
        yield
    finally:
        request_context.end(token)


async def record(db, session, moment, *events):
    with request(session):
        await SqlAnalyticsLog(db, request_context.identity).record(list(events), moment)


class Shop:
    def __init__(self, db) -> None:
        self.db = db
        self.orders = SqlOrderRepository(db)

    async def open(self) -> None:
        self.sellers = [await add_user(self.db, Role.SELLER) for _ in range(2)]
        self.buyer = await add_user(self.db, Role.BUYER)
        self.items = [await add_item(self.db, self.sellers[n % 2], title=f"Item {n}") for n in range(4)]

    async def session(self, rng: random.Random, name: str | None, start: datetime) -> None:
        """A random session from `start`, its events minutes to hours apart (so it may cross midnight)."""
        t = start
        for _ in range(rng.randrange(1, 9)):
            t += timedelta(
                seconds=rng.choice((rng.random() * 120, rng.random() * 1800, rng.random() * 20000))
            )
            roll = rng.random()
            item = rng.choice(self.items)
            if roll < 0.3:
                await record(self.db, name, t, SearchPerformed(rng.choice(QUERIES), rng.choice((0, 3, 7))))
            elif roll < 0.75:
                await record(self.db, name, t, ItemViewed(item.id, item.seller_id))
            elif roll < 0.85:
                await record(self.db, name, t, CartChanged(item.id, "add", 1))
            else:
                await self.paid(name, t, item, rng.random() < 0.8)

    async def paid(self, session, moment, item, pays: bool) -> None:
        order = new_order(self.buyer, [(item, 1)], created_at=moment, status=OrderStatus.PAID)
        await self.orders.add(order)
        await record(self.db, session, moment, CheckoutStarted(order.id, order.total, 1))
        if pays:
            await record(self.db, session, moment + timedelta(seconds=5), OrderPaid(order.id, order.total))


def periods(rng: random.Random) -> list[Period]:
    fixed = [
        Period(DAY0 - timedelta(hours=1), NOW),
        Period(DAY0 + timedelta(days=1, hours=7, minutes=13), DAY0 + timedelta(days=4, hours=2)),
        Period(DAY0 + timedelta(days=1), DAY0 + timedelta(days=3)),  # whole days, the end instant included
        Period(DAY0 + timedelta(days=2), DAY0 + timedelta(days=4, microseconds=-1)),
        Period(DAY0 + timedelta(days=2, hours=1), DAY0 + timedelta(days=2, hours=20)),  # inside one day
    ]
    span = (NOW - DAY0).total_seconds()
    randoms = []
    for _ in range(4):
        a, b = sorted(rng.random() * span for _ in range(2))
        randoms.append(Period(DAY0 + timedelta(seconds=a), DAY0 + timedelta(seconds=b)))
    return fixed + randoms


async def figures(db, shop: Shop, period: Period, *, use_rollups: bool):
    reports = SqlAnalyticsReports(db, use_rollups=use_rollups)
    return (
        await reports.funnel(period),
        await reports.search(period),
        await reports.sessions(period),
        *[await reports.seller_dashboard(seller.id, period) for seller in shop.sellers],
    )


async def assert_rollups_match_raw(db, shop: Shop, rng: random.Random) -> None:
    for period in periods(rng):
        assert await figures(db, shop, period, use_rollups=True) == await figures(
            db, shop, period, use_rollups=False
        ), period


@pytest.fixture
async def shop(db) -> Shop:
    shop = Shop(db)
    await shop.open()
    return shop


async def random_sessions(shop: Shop, rng: random.Random, n: int) -> None:
    for s in range(n):
        start = DAY0 + timedelta(seconds=rng.random() * DAYS * 86400)
        if s % 10 == 0:  # some sessions start just before a midnight and carry on after it
            start = DAY0 + timedelta(days=rng.randrange(DAYS), hours=23, minutes=50)
        await shop.session(rng, f"s{s}" if s % 13 else None, start)


@pytest.mark.parametrize("seed", [1, 2])
async def test_reports_from_rollups_equal_the_raw_reports(db, shop, seed):
    rng = random.Random(seed)
    await random_sessions(shop, rng, 60)
    reports = SqlAnalyticsReports(db)

    assert sorted(await reports.rollups.roll_up(NOW)) == [
        (DAY0 + timedelta(days=n)).strftime("%Y-%m-%d") for n in range(DAYS)
    ]
    assert await count(db, "analytics_session_days") > 0
    assert await count(db, "analytics_search_days") > 0
    assert await count(db, "analytics_view_days") > 0
    whole = await reports.rollups.split(Period(DAY0 - timedelta(hours=1), NOW))
    assert whole.days == DAYS  # the rollups are what answers
    await assert_rollups_match_raw(db, shop, rng)


async def test_late_events_are_read_raw_until_their_day_is_rolled_up_again(db, shop):
    rng = random.Random(7)
    await random_sessions(shop, rng, 40)
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    period = Period(DAY0, NOW)
    before = await figures(db, shop, period, use_rollups=True)

    # Written now into day 2, and just after midnight into day 3 (engaging a search of day 2's evening).
    item = shop.items[0]
    evening = DAY0 + timedelta(days=2, hours=23, minutes=55)
    await record(db, "late", evening, SearchPerformed("late query", 4))
    await record(db, "late", evening + timedelta(minutes=10), ItemViewed(item.id, item.seller_id))
    await shop.paid("late", evening + timedelta(minutes=12), item, True)

    assert await figures(db, shop, period, use_rollups=True) != before
    await assert_rollups_match_raw(db, shop, rng)
    split = await reports.rollups.split(period)
    assert split.days < DAYS  # days 2 and 3 are read raw meanwhile

    redone = await reports.rollups.roll_up(NOW)
    assert sorted(redone) == ["2026-11-22", "2026-11-23"]
    assert (await reports.rollups.split(period)).days == DAYS
    await assert_rollups_match_raw(db, shop, rng)
    assert await reports.rollups.roll_up(NOW) == []  # nothing left to do


async def test_a_session_spanning_two_days_counts_once_in_the_funnel(db, shop):
    item = shop.items[1]
    night = DAY0 + timedelta(days=1, hours=23, minutes=50)
    await record(db, "night-owl", night, ItemViewed(item.id, item.seller_id))
    await record(db, "night-owl", night + timedelta(minutes=20), CartChanged(item.id, "add", 1))
    await record(db, "night-owl", night + timedelta(minutes=30), ItemViewed(item.id, item.seller_id))
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    period = Period(DAY0, NOW)
    assert (await reports.rollups.split(period)).days == DAYS - 1  # from the first day with events

    funnel = await reports.funnel(period)
    assert (funnel.steps[0].sessions, funnel.steps[1].sessions) == (1, 1)
    sessions = await reports.sessions(period)
    assert (sessions.sessions, sessions.median_duration_s, sessions.events_per_session) == (1, 1800.0, 3.0)
    board = await reports.seller_dashboard(item.seller_id, period)
    assert (board.views, board.top_items[0].views) == (2, 2)


async def test_rolling_up_a_day_again_is_idempotent_and_a_pass_is_bounded(db, shop):
    await random_sessions(shop, random.Random(3), 30)
    rollups = SqlAnalyticsReports(db).rollups
    assert len(await rollups.roll_up(NOW, max_days=2)) == 2  # the newest two
    assert len(await rollups.roll_up(NOW, max_days=2)) == 2
    assert len(await rollups.roll_up(NOW, max_days=2)) == 1
    tables = (
        "analytics_session_days",
        "analytics_search_days",
        "analytics_view_days",
        "analytics_rollup_days",
    )
    rows = [await count(db, t) for t in tables]
    for n in range(DAYS):
        await rollups.roll_up_day((DAY0 + timedelta(days=n)).strftime("%Y-%m-%d"), NOW)
    assert [await count(db, t) for t in tables] == rows
    await assert_rollups_match_raw(db, shop, random.Random(3))


async def test_an_open_day_is_not_rolled_up_and_reads_raw(db, shop):
    await random_sessions(shop, random.Random(4), 20)
    rollups = SqlAnalyticsReports(db).rollups
    last_day_closes = DAY0 + timedelta(days=DAYS) + CLOSE_DELAY
    done = await rollups.roll_up(last_day_closes - timedelta(seconds=1))
    assert (DAY0 + timedelta(days=DAYS - 1)).strftime("%Y-%m-%d") not in done
    assert len(done) == DAYS - 1
    assert Split.raw(Period(DAY0, NOW)).days == 0
    await assert_rollups_match_raw(db, shop, random.Random(4))


async def test_retention_drops_the_rollups_of_pruned_days_and_the_boundary_day_is_redone(db, shop):
    rng = random.Random(5)
    await random_sessions(shop, rng, 40)
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    cut = DAY0 + timedelta(days=2, hours=12)
    assert await reports.prune(cut) > 0
    days = [r["day"] for r in await db.fetch("SELECT day FROM analytics_rollup_days ORDER BY day")]
    assert days == ["2026-11-23", "2026-11-24"]
    await assert_rollups_match_raw(db, shop, rng)
    # The service passes the retention's cut-off: the day it falls in stays raw (pruned again at every pass).
    assert await reports.rollups.roll_up(NOW, kept_from=cut) == []
    await assert_rollups_match_raw(db, shop, rng)
    assert await reports.rollups.roll_up(NOW) == ["2026-11-22"]
    await assert_rollups_match_raw(db, shop, rng)


def test_split_days_are_whole_utc_days():
    assert Split("2026-11-20", "2026-11-22", DAY0, DAY0 + timedelta(days=2)).days == 2


async def test_a_session_alone_on_a_rolled_up_day_that_comes_back_in_the_raw_edge_counts_once(db, shop):
    item = shop.items[2]
    await record(db, "returning", DAY0 + timedelta(days=3, hours=9), ItemViewed(item.id, item.seller_id))
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    [row] = await db.fetch("SELECT alone FROM analytics_session_days WHERE session_id = 'returning'")
    assert row["alone"] == 1
    # Back today (not rolled up yet: read raw), and adds to the cart.
    await record(db, "returning", NOW - timedelta(minutes=5), CartChanged(item.id, "add", 1))
    period = Period(DAY0, NOW)
    assert (await reports.rollups.split(period)).days == 2  # days 3 and 4 (from the first day with events)
    funnel = await reports.funnel(period)
    assert (funnel.steps[0].sessions, funnel.steps[1].sessions) == (1, 1)
    sessions = await reports.sessions(period)
    assert (sessions.sessions, sessions.events_per_session) == (1, 2.0)
    await assert_rollups_match_raw(db, shop, random.Random(8))


async def rollup_contents(db) -> dict[str, list[tuple[str, ...]]]:
    """Every rollup table's rows (less their surrogate ids and when they were written), sorted."""
    contents = {}
    for table in (*ROLLUP_TABLES, "analytics_rollup_days", "analytics_rollup_state"):
        rows = await db.fetch(f"SELECT * FROM {table}")
        contents[table] = sorted(
            tuple(f"{key}={value}" for key, value in sorted(row.items()) if key not in ("id", "rolled_at"))
            for row in rows
        )
    return contents


async def test_a_backfill_writes_what_the_background_pass_writes(db, shop):
    rng = random.Random(11)
    await random_sessions(shop, rng, 60)
    rollups = SqlAnalyticsReports(db).rollups
    while await rollups.roll_up(NOW, max_days=2):
        pass
    by_pass = await rollup_contents(db)
    assert all(by_pass[table] for table in ROLLUP_TABLES)
    with pytest.raises(ValueError):
        await rollups.backfill(NOW)  # only into empty rollups
    for table in (*ROLLUP_TABLES, "analytics_rollup_days", "analytics_rollup_state"):
        await db.fetch(f"DELETE FROM {table}")

    days = await rollups.backfill(NOW, chunk_days=2)  # chunks that cut the days in several statements

    assert days == [(DAY0 + timedelta(days=n)).strftime("%Y-%m-%d") for n in reversed(range(DAYS))]
    assert await rollup_contents(db) == by_pass
    assert await rollups.roll_up(NOW) == []  # the background pass finds nothing left to do
    await assert_rollups_match_raw(db, shop, rng)


async def test_a_day_rolled_up_after_its_neighbour_takes_the_sessions_they_share_out_of_its_sums(db, shop):
    item = shop.items[0]
    late_night = DAY0 + timedelta(days=1, hours=23, minutes=58)
    await record(db, "owl", late_night, ItemViewed(item.id, item.seller_id))
    await record(db, "owl", late_night + timedelta(minutes=5), ItemViewed(item.id, item.seller_id))
    await record(db, "lark", DAY0 + timedelta(days=1, hours=8), ItemViewed(item.id, item.seller_id))
    rollups = SqlAnalyticsReports(db).rollups
    await rollups.roll_up_day("2026-11-21", NOW)
    [day1] = await db.fetch("SELECT sessions, browsed FROM analytics_day_totals WHERE day = '2026-11-21'")
    assert (day1["sessions"], day1["browsed"]) == (2, 2)  # owl alone on day 1 as far as the rollups know

    await rollups.roll_up_day("2026-11-22", NOW)  # owl is on day 2 too: no longer alone, on either day

    totals = await db.fetch("SELECT day, sessions, browsed FROM analytics_day_totals ORDER BY day")
    assert [(r["day"], r["sessions"], r["browsed"]) for r in totals] == [("2026-11-21", 1, 1)]
    [viewers] = await db.fetch(
        "SELECT views, viewers FROM analytics_seller_view_days WHERE day = '2026-11-21' AND seller_id = {}",
        item.seller_id,
    )
    assert (viewers["views"], viewers["viewers"]) == (2, 1)
    await rollups.roll_up(NOW)  # the days left (no events) and the watermark
    period = Period(DAY0 + timedelta(days=1), DAY0 + timedelta(days=3))
    reports = SqlAnalyticsReports(db)
    assert (await reports.rollups.split(period)).days == 2
    funnel = await reports.funnel(period)
    assert funnel.steps[0].sessions == 2
    board = await reports.seller_dashboard(item.seller_id, period)
    assert (board.views, board.top_items[0].views) == (3, 3)
    sessions = await reports.sessions(period)
    assert (sessions.sessions, sessions.events_per_session) == (2, 1.5)
    assert await figures(db, shop, period, use_rollups=True) == await figures(
        db, shop, period, use_rollups=False
    )


async def test_percentiles_from_the_duration_buckets_equal_the_raw_ones(db, shop):
    # Many sessions, several in the same whole second, some returning in the raw edge: the ranks the
    # percentiles lie between fall in shared buckets, read back exactly.
    rng = random.Random(12)
    item = shop.items[1]
    for n in range(57):
        start = DAY0 + timedelta(days=rng.randrange(DAYS), hours=rng.randrange(1, 20))
        await record(db, f"p{n}", start, SearchPerformed("mug", 3))
        length = timedelta(seconds=rng.choice((30, 30.4, 31, 90, 90.5, 600)) + rng.random() / 10)
        await record(db, f"p{n}", start + length, ItemViewed(item.id, item.seller_id))
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    for n in range(0, 57, 9):
        await record(db, f"p{n}", NOW - timedelta(minutes=3), CartChanged(item.id, "add", 1))
    for period in (Period(DAY0, NOW), Period(DAY0 + timedelta(hours=13), NOW - timedelta(hours=30))):
        assert (await reports.rollups.split(period)).days >= 2
        rolled = await reports.sessions(period)
        assert rolled == await SqlAnalyticsReports(db, use_rollups=False).sessions(period)
    assert rolled.sessions > 30


async def test_a_session_in_the_head_edge_and_on_the_rolled_up_days_counts_once(db, shop):
    item = shop.items[3]
    # Seen in the head edge (day 1's evening, rolled up) and on day 2: not alone, grouped.
    await record(db, "early", DAY0 + timedelta(days=1, hours=20), ItemViewed(item.id, item.seller_id))
    await record(db, "early", DAY0 + timedelta(days=2, hours=10), CartChanged(item.id, "add", 1))
    # Alone on day 3 when rolled up, then an event written late into day 1's evening: day 1 is read raw again.
    await record(db, "late-head", DAY0 + timedelta(days=3, hours=9), ItemViewed(item.id, item.seller_id))
    reports = SqlAnalyticsReports(db)
    await reports.rollups.roll_up(NOW)
    period = Period(DAY0 + timedelta(days=1, hours=12), NOW)
    split = await reports.rollups.split(period)
    assert (split.days, split.head_rolled) == (3, True)
    funnel = await reports.funnel(period)
    assert (funnel.steps[0].sessions, funnel.steps[1].sessions) == (2, 1)

    await record(db, "late-head", DAY0 + timedelta(days=1, hours=22), CartChanged(item.id, "add", 1))

    assert (await reports.rollups.split(period)).head_rolled is False
    funnel = await reports.funnel(period)
    assert (funnel.steps[0].sessions, funnel.steps[1].sessions) == (2, 2)
    sessions = await reports.sessions(period)
    assert sessions.sessions == 2
    board = await reports.seller_dashboard(item.seller_id, period)
    assert board.views == 2
    assert await figures(db, shop, period, use_rollups=True) == await figures(
        db, shop, period, use_rollups=False
    )


async def test_session_percentiles_in_buckets_of_grouped_sessions_and_with_no_session(db, shop):
    # The percentiles are found in the database (a histogram, then the wanted buckets' durations ranked): a rank
    # in a bucket that only grouped sessions hold (crossing midnight or coming back in the raw tail edge), and
    # rolled-up days with events but no session at all, read as the raw events do.
    item = shop.items[2]
    reports, raw = SqlAnalyticsReports(db), SqlAnalyticsReports(db, use_rollups=False)
    for day in range(DAYS):
        await record(db, None, DAY0 + timedelta(days=day, hours=6), SearchPerformed("mug", 3))
    await reports.rollups.roll_up(NOW)
    nobody = Period(DAY0 + timedelta(hours=3), NOW)
    assert (await reports.rollups.split(nobody)).days >= 3
    assert await reports.sessions(nobody) == await raw.sessions(nobody)
    assert (await reports.sessions(nobody)).sessions == 0

    for n in range(9):  # across the midnight between days 1 and 2: 600 s and more, each its own bucket
        start = DAY0 + timedelta(days=2, seconds=-300 - n)
        await record(db, f"night{n}", start, SearchPerformed("mug", 3))
        await record(
            db,
            f"night{n}",
            start + timedelta(seconds=600 + 2 * n + 0.25),
            ItemViewed(item.id, item.seller_id),
        )
    for n in range(4):  # alone on day 3, short
        start = DAY0 + timedelta(days=3, hours=2 + n)
        await record(db, f"short{n}", start, SearchPerformed("cup", 3))
        await record(db, f"short{n}", start + timedelta(seconds=12.5), ItemViewed(item.id, item.seller_id))
    await db.fetch("DELETE FROM analytics_rollup_days")  # rolled up again, with these sessions
    for table in ROLLUP_TABLES:
        await db.fetch(f"DELETE FROM {table}")
    await reports.rollups.roll_up(NOW)
    for n in range(3):  # alone on day 3 when rolled up, then back in the raw tail edge: 7 h and more
        await record(db, f"short{n}", NOW - timedelta(minutes=5), CartChanged(item.id, "add", 1))
    for period in (Period(DAY0 + timedelta(hours=3), NOW), Period(DAY0, DAY0 + timedelta(days=3, hours=12))):
        rolled = await reports.sessions(period)
        assert (await reports.rollups.split(period)).days >= 2
        assert rolled == await raw.sessions(period), period
    assert rolled.sessions == 13 and 600 < rolled.median_duration_s < 620


async def open_sessions(db) -> set[tuple[str, str, str | None]]:
    return {
        (row["day"], row["session_id"], row["alone_day"])
        for row in await db.fetch("SELECT * FROM analytics_open_sessions")
    }


async def alone(db, day: datetime, session: str) -> int:
    [row] = await db.fetch(
        "SELECT alone FROM analytics_session_days WHERE day = {} AND session_id = {}",
        f"{day:%Y-%m-%d}",
        session,
    )
    return int(row["alone"])


async def test_the_pass_marks_the_sessions_of_the_open_days_and_reports_stay_exact(db, shop):
    # The pass records the sessions seen on the days not rolled up yet (and the rolled-up day a session coming
    # back is alone on), so that a report need not look its raw tail edge's sessions up: exact through the night
    # (a day rolled up while its sessions are already recorded on the next one makes them not alone on it), and
    # once the open day is rolled up in turn.
    item, day1, day2, day3 = shop.items[0], *(DAY0 + timedelta(days=n) for n in (1, 2, 3))
    view = ItemViewed(item.id, item.seller_id)
    await record(db, "back", day1 + timedelta(hours=9), view)  # alone on day 1, back on day 3
    await record(db, "night", day3 - timedelta(minutes=5), SearchPerformed("mug", 3))  # day 2 into day 3
    await record(db, "night", day3 + timedelta(minutes=4), view)
    await record(db, "once", day1 + timedelta(hours=3), view)
    reports, raw = SqlAnalyticsReports(db), SqlAnalyticsReports(db, use_rollups=False)

    async def exact(now: datetime) -> None:
        for period in (Period(DAY0 + timedelta(hours=12), now), Period(day1, now)):
            assert await figures(db, shop, period, use_rollups=True) == await figures(
                db, shop, period, use_rollups=False
            ), period

    night = day3 + timedelta(minutes=10)  # day 2 is not closed yet
    await record(db, "back", day3 + timedelta(minutes=5), CartChanged(item.id, "add", 1))
    assert await reports.rollups.roll_up(night) == [f"{day1:%Y-%m-%d}"]
    assert await open_sessions(db) == {
        (f"{day2:%Y-%m-%d}", "night", None),
        (f"{day3:%Y-%m-%d}", "night", None),
        (f"{day3:%Y-%m-%d}", "back", f"{day1:%Y-%m-%d}"),  # looked up: alone on day 1
    }
    assert await alone(db, day1, "back") == 1
    await exact(night)
    assert (await raw.funnel(Period(day1, night))).steps[0].sessions == 3

    after = day3 + CLOSE_DELAY + timedelta(minutes=1)  # day 2 rolled up: "night" is recorded on day 3
    assert await reports.rollups.roll_up(after) == [f"{day2:%Y-%m-%d}"]
    assert await alone(db, day2, "night") == 0
    assert await open_sessions(db) == {
        (f"{day3:%Y-%m-%d}", "night", None),
        (f"{day3:%Y-%m-%d}", "back", f"{day1:%Y-%m-%d}"),
    }
    assert (await reports.rollups.split(Period(day1, after))).days == 2
    await exact(after)

    await record(db, "late", day3 + timedelta(hours=2), view)
    await record(db, "back", day3 + timedelta(hours=3), view)
    await exact(day3 + timedelta(hours=4))  # "late" not recorded yet: looked up, as before
    assert await reports.rollups.mark_open(day3 + timedelta(hours=4)) == 1
    await exact(day3 + timedelta(hours=4))

    next_day = day3 + DAY + CLOSE_DELAY + timedelta(minutes=1)  # day 3 rolled up: its records go
    assert await reports.rollups.roll_up(next_day) == [f"{day3:%Y-%m-%d}"]
    assert await open_sessions(db) == set()
    await exact(next_day)
