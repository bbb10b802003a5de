"""The analytics log and the reports against real databases, on both engines: events recorded through the
log (with the request's session, user and trace), then every report's figures checked exactly."""

from __future__ import annotations

import dataclasses
import statistics
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest

from market.adapters.db.analytics import BufferedAnalyticsLog, SqlAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.commerce import SqlOrderRepository
from market.adapters.db.repositories import PiccoloUnitOfWork
from market.batching import flushed_first
from market.domain.analytics import Period
from market.domain.events import (
    CartChanged,
    CheckoutStarted,
    ItemListed,
    ItemViewed,
    OrderPaid,
    PaymentAttempted,
    SearchPerformed,
)
from market.domain.money import Money
from market.domain.orders import (
    GATEWAY_UNAVAILABLE,
    NOT_RECEIVED_BY_PROVIDER,
    OrderStatus,
    PaymentStatus,
)
from market.domain.users import Role
from market.telemetry import request_context
from tests.support.database import add_item, add_user, count
from tests.support.factories import T0, new_order

PERIOD = Period(T0, T0 + timedelta(days=1))
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@contextmanager
def request(session_id: str, user_id: str | None = None):
    token = request_context.begin(session_id, TRACE)
    request_context.current().user_id = user_id
    try:
        yield
    finally:
        request_context.end(token)


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def uid() -> str:
    return str(uuid.uuid4())


async def record(db, session, minutes, *events, user=None):
    with request(session, user):
        await SqlAnalyticsLog(db, request_context.identity).record(list(events), at(minutes))


async def rows(db):
    return await db.fetch(
        "SELECT kind, session_id, user_id, trace_id, order_id FROM analytics_events ORDER BY id"
    )


# --- the log ----------------------------------------------------------------------------------------------


async def test_events_carry_the_requests_session_user_and_trace_and_others_are_not_kept(db):
    buyer, item = uid(), uid()
    await record(db, "s1", 0, ItemViewed(item, uid()), ItemListed(item, uid()), user=buyer)
    [row] = await rows(db)
    assert (row["kind"], row["session_id"], str(row["user_id"]), row["trace_id"]) == (
        "item_viewed",
        "s1",
        buyer,
        TRACE,
    )


async def test_a_later_payment_event_belongs_to_the_session_and_buyer_that_checked_out(db):
    buyer, order = uid(), uid()
    await record(db, "shopper", 0, CheckoutStarted(order, Money(1000, "EUR"), 1), user=buyer)
    # The provider's webhook arrives in a request of its own (another session), or reconciliation runs in
    # the background (no request at all).
    await record(db, "provider-webhook", 1, PaymentAttempted(order, "succeeded", "card", Money(1000, "EUR")))
    await SqlAnalyticsLog(db).record([OrderPaid(order, Money(1000, "EUR"))], at(2))
    assert [(r["kind"], r["session_id"], str(r["user_id"])) for r in await rows(db)] == [
        ("checkout_started", "shopper", buyer),
        ("payment_succeeded", "shopper", buyer),
        ("order_paid", "shopper", buyer),
    ]


async def test_events_recorded_in_a_unit_of_work_that_rolls_back_are_gone(db):
    async with PiccoloUnitOfWork(db) as work:
        await work.analytics.record([CheckoutStarted(uid(), Money(1, "EUR"), 1)], T0)
        await work.analytics.record([OrderPaid(uid(), Money(1, "EUR"))], T0)
    async with PiccoloUnitOfWork(db) as work:
        await work.analytics.record([SearchPerformed("kept", 1)], T0)
        await work.commit()
    assert [r["kind"] for r in await rows(db)] == ["search"]


async def test_several_events_of_one_change_are_one_statement_and_each_keeps_its_order_session(db):
    buyer, order = uid(), uid()
    await record(db, "shopper", 0, CheckoutStarted(order, Money(1000, "EUR"), 1), user=buyer)
    with request("provider-webhook"):
        await SqlAnalyticsLog(db, request_context.identity).record(
            [
                PaymentAttempted(order, "succeeded", "card", Money(1000, "EUR")),
                OrderPaid(order, Money(1000, "EUR")),
            ],
            at(1),
        )
    assert [(r["kind"], r["session_id"], str(r["user_id"])) for r in await rows(db)] == [
        ("checkout_started", "shopper", buyer),
        ("payment_succeeded", "shopper", buyer),
        ("order_paid", "shopper", buyer),
    ]


async def test_buffered_views_and_searches_reach_the_table_in_a_batch_and_reports_flushed_first_see_them(db):
    log = BufferedAnalyticsLog(db, request_context.identity, flush_interval_s=3600)
    log.buffer.start()
    try:
        buyer, item, seller = uid(), uid(), uid()
        with request("s1", buyer):
            await log.record([ItemViewed(item, seller), ItemListed(item, seller)], at(0))
            await log.record([SearchPerformed("mug", 0)], at(1))
        assert await rows(db) == []  # not on the request's path: in the buffer
        assert log.buffer.pending() == 2
        reports = flushed_first(SqlAnalyticsReports(db), log.flush)
        search = await reports.search(PERIOD)
        assert (search.searches, search.no_results) == (1, 1)
        assert [(r["kind"], r["session_id"], str(r["user_id"]), r["trace_id"]) for r in await rows(db)] == [
            ("item_viewed", "s1", buyer, TRACE),
            ("search", "s1", buyer, TRACE),
        ]
        stored = await db.fetch(
            "SELECT occurred_at, item_id, seller_id, query, result_count FROM analytics_events"
        )
        assert [(str(r["item_id"]), str(r["seller_id"])) for r in stored[:1]] == [(item, seller)]
        assert (stored[1]["query"], stored[1]["result_count"]) == ("mug", 0)
        assert stored[0]["occurred_at"] == at(0)
    finally:
        await log.buffer.stop()


async def test_buffered_events_are_written_at_shutdown_and_without_a_writer_at_once(db):
    log = BufferedAnalyticsLog(db, request_context.identity, flush_interval_s=3600)
    await log.record([SearchPerformed("not started: written at once", 3)], at(0))
    assert len(await rows(db)) == 1
    log.buffer.start()
    await log.record([SearchPerformed("buffered", 3)], at(1))
    assert len(await rows(db)) == 1
    await log.buffer.stop()
    assert [r["kind"] for r in await rows(db)] == ["search", "search"]


async def test_a_full_buffer_or_an_event_of_an_order_is_written_at_once(db):
    log = BufferedAnalyticsLog(db, request_context.identity, capacity=1, flush_interval_s=3600)
    log.buffer.start()
    try:
        await log.record([SearchPerformed("first", 1)], at(0))
        await log.record([SearchPerformed("no room left", 1)], at(1))
        await log.record([OrderPaid(uid(), Money(1, "EUR"))], at(2))
        assert [r["kind"] for r in await rows(db)] == ["search", "order_paid"]
        assert log.buffer.pending() == 1
    finally:
        await log.buffer.stop()
    assert len(await rows(db)) == 3


async def test_a_batch_that_cannot_be_written_stays_buffered_and_is_written_later(db):
    log = BufferedAnalyticsLog(db, request_context.identity, flush_interval_s=3600)
    log.buffer.start()
    try:
        await log.record([SearchPerformed("kept", 1)], at(0))
        write = log._write

        async def failing(values, side):
            raise ConnectionError("database gone")

        log.buffer._write = failing
        with pytest.raises(ConnectionError):
            await log.flush()
        assert log.buffer.pending() == 1
        log.buffer._write = write
        assert await log.flush() == 1
        assert [r["kind"] for r in await rows(db)] == ["search"]
    finally:
        await log.buffer.stop()


# --- reports ----------------------------------------------------------------------------------------------


async def test_the_funnel_counts_sessions_that_reached_each_step_and_every_step_before(db):
    reports = SqlAnalyticsReports(db)
    item = uid()
    await record(db, "viewer", 1, ItemViewed(item, uid()), ItemViewed(item, uid()))
    await record(db, "searcher", 2, SearchPerformed("mug", 0))
    await record(db, "carter", 3, ItemViewed(item, uid()), CartChanged(item, "add", 1))
    for session in ("buyer-1", "buyer-2"):
        order = uid()
        await record(
            db,
            session,
            4,
            SearchPerformed("mug", 3),
            CartChanged(item, "add", 2),
            CheckoutStarted(order, Money(500, "EUR"), 1),
            *([OrderPaid(order, Money(500, "EUR"))] if session == "buyer-1" else []),
        )
    # Carted without browsing first (an API client that knew the id): not in the funnel at all.
    await record(db, "direct", 5, CartChanged(item, "add", 1))
    await record(db, "outside", 60 * 25, ItemViewed(item, uid()))  # after the period

    report = await reports.funnel(PERIOD)
    assert [(s.name, s.sessions) for s in report.steps] == [
        ("browsed", 5),
        ("carted", 3),
        ("checkout_started", 2),
        ("paid", 1),
    ]
    assert [s.conversion for s in report.steps] == pytest.approx([1.0, 3 / 5, 2 / 3, 1 / 2])
    assert report.overall_conversion == pytest.approx(1 / 5)


async def test_the_search_report(db):
    reports = SqlAnalyticsReports(db)
    item = uid()
    await record(db, "a", 0, SearchPerformed("blue mug", 4))
    await record(db, "a", 29, ItemViewed(item, uid()))  # within 30 minutes: a success
    await record(db, "b", 0, SearchPerformed("blue mug", 4))
    await record(db, "b", 31, CartChanged(item, "add", 1))  # too late
    await record(db, "c", 0, SearchPerformed("zebra", 0))
    # No results, then a cart add: no success (the session found the item some other way).
    await record(db, "d", 0, SearchPerformed("zebra", 0), CartChanged(item, "add", 1))
    await record(db, "e", 0, SearchPerformed("qwerty", 0))
    await record(db, "f", 5, ItemViewed(item, uid()))  # another session's view is no success
    await record(db, "e", 10, SearchPerformed("hat", 2))

    report = await reports.search(PERIOD)
    assert (report.searches, report.no_results) == (6, 3)
    assert report.no_results_rate == pytest.approx(0.5)
    assert report.success_rate == pytest.approx(1 / 6)  # only "a": a search with results, then a view
    assert [(q.query, q.count) for q in report.top_queries] == [
        ("blue mug", 2),
        ("zebra", 2),
        ("hat", 1),
        ("qwerty", 1),
    ]
    assert [(q.query, q.count) for q in report.top_no_result_queries] == [("zebra", 2), ("qwerty", 1)]


async def test_the_payments_report_with_percentiles_per_currency(db):
    reports = SqlAnalyticsReports(db)
    eur = [1000, 1999, 2500, 4000, 10_001]

    async def paid(session, minutes, amount, currency, method="card"):
        order = uid()
        await record(
            db,
            session,
            minutes,
            PaymentAttempted(order, "succeeded", method, Money(amount, currency)),
            OrderPaid(order, Money(amount, currency)),
        )

    for n, amount in enumerate(eur):
        await paid(f"e{n}", n, amount, "EUR")
    await paid("u", 1, 700, "USD")
    await paid("u", 2, 301, "USD", method="wallet")
    await record(db, "d", 3, PaymentAttempted(uid(), "declined", "card", Money(5000, "EUR"), "card_declined"))
    # A charge call that timed out, though the provider took the money: reconciliation paid the order later.
    # The attempt counts by its final known outcome: a success (and the money taken is in the amounts).
    late = uid()
    await record(
        db, "x", 4, PaymentAttempted(late, "error", "wallet", Money(5000, "EUR"), "gateway_unavailable")
    )
    await record(db, "x", 5, OrderPaid(late, Money(5000, "EUR")))
    eur.append(5000)
    # A gateway error whose order was never paid stays errored.
    await record(
        db, "y", 6, PaymentAttempted(uid(), "error", "wallet", Money(800, "EUR"), "gateway_unavailable")
    )

    report = await reports.payments(PERIOD)
    assert (report.attempts, report.succeeded, report.declined, report.errored) == (10, 8, 1, 1)
    assert report.success_rate == pytest.approx(8 / 10)  # declines count in the denominator
    assert [(m.method, m.attempts, m.success_rate) for m in report.by_method] == [
        ("card", 7, pytest.approx(6 / 7)),
        ("wallet", 3, pytest.approx(2 / 3)),
    ]
    by_currency = {a.currency: a for a in report.amounts}
    euros = by_currency["EUR"]
    p95 = statistics.quantiles(eur, n=100, method="inclusive")[94]
    assert (euros.count, euros.sum, euros.mean, euros.p50) == (
        6,
        *(Money(n, "EUR") for n in (sum(eur), 4083, 3250)),
    )
    assert euros.p95 == Money(int(p95 + 0.5), "EUR")
    dollars = by_currency["USD"]
    assert (dollars.sum, dollars.mean, dollars.p50, dollars.p95) == tuple(
        Money(n, "USD") for n in (1001, 501, 501, 680)
    )


async def test_a_timed_out_charge_the_provider_later_failed_counts_as_declined_not_errored(db):
    seller, buyer = await add_user(db, Role.SELLER), await add_user(db, Role.BUYER)
    mug = await add_item(db, seller, price_cents=800)
    orders = SqlOrderRepository(db)

    async def timed_out(minutes, status, reason):
        """A checkout whose charge call timed out (an errored attempt), its order then settled as `status`."""
        order = new_order(buyer, [(mug, 1)], created_at=at(minutes))
        await orders.add(order)
        payment = dataclasses.replace(order.payment, status=status, failure_reason=reason)
        await orders.save_status(
            dataclasses.replace(order, status=OrderStatus.PAYMENT_FAILED, payment=payment)
        )
        attempt = PaymentAttempted(order.id, "error", "card", order.total, GATEWAY_UNAVAILABLE)
        await record(db, f"s{minutes}", minutes, attempt)

    # The provider's payment.failed event (or reconciliation reading its declined charge) settled it: declined.
    await timed_out(1, PaymentStatus.DECLINED, "card_declined")
    await timed_out(2, PaymentStatus.DECLINED, None)  # a payment.failed event without a reason
    # Reconciliation found no charge at the provider: the call never reached it, no card was declined.
    await timed_out(3, PaymentStatus.DECLINED, NOT_RECEIVED_BY_PROVIDER)
    # Still unknown (pending, reconciliation has not heard yet).
    pending = new_order(buyer, [(mug, 1)], created_at=at(4))
    await orders.add(pending)
    await record(
        db, "s4", 4, PaymentAttempted(pending.id, "error", "card", pending.total, GATEWAY_UNAVAILABLE)
    )

    report = await SqlAnalyticsReports(db).payments(PERIOD)
    assert (report.attempts, report.succeeded, report.declined, report.errored) == (4, 0, 2, 2)
    days = await SqlAnalyticsReports(db).payments_by_day(PERIOD)
    assert [(d.succeeded, d.failed) for d in days] == [(0, 4)]


async def test_the_carts_report_with_the_abandon_window(db):
    reports = SqlAnalyticsReports(db)
    window = timedelta(hours=1)
    item = uid()
    checked_out, abandoned, late, pending = uid(), uid(), uid(), uid()
    await record(db, "s1", 0, CartChanged(item, "add", 1), user=checked_out)
    await record(db, "s1", 30, CheckoutStarted(uid(), Money(100, "EUR"), 1), user=checked_out)
    await record(db, "s2", 0, CartChanged(item, "add", 1), user=abandoned)
    await record(db, "s2", 5, CartChanged(item, "remove", -1), user=abandoned)
    await record(db, "s3", 0, CartChanged(item, "add", 1), user=late)
    await record(db, "s3", 61, CheckoutStarted(uid(), Money(100, "EUR"), 1), user=late)  # after the window
    await record(db, "s4", 60 * 23, CartChanged(item, "add", 1), user=pending)  # window not over yet

    report = await reports.carts(PERIOD, window, now=at(60 * 23 + 30))
    assert (report.carts_with_items, report.checked_out, report.abandoned) == (4, 1, 2)
    assert report.abandonment_rate == pytest.approx(2 / 4)
    assert report.abandon_after_s == 3600


async def test_the_sessions_report(db):
    reports = SqlAnalyticsReports(db)
    item = uid()
    durations = {"a": 0, "b": 2, "c": 10, "d": 30}  # minutes from first to last event
    for session, minutes in durations.items():
        await record(db, session, 0, ItemViewed(item, uid()))
        await record(db, session, minutes, ItemViewed(item, uid()), SearchPerformed("x", 1))
    report = await reports.sessions(PERIOD)
    seconds = sorted(m * 60 for m in durations.values())
    assert report.sessions == 4
    assert report.median_duration_s == pytest.approx(statistics.median(seconds))
    assert report.p95_duration_s == pytest.approx(
        statistics.quantiles(seconds, n=100, method="inclusive")[94]
    )
    assert report.events_per_session == pytest.approx(3.0)


async def test_both_ends_of_a_period_are_included_and_an_empty_period_gives_zeros(db):
    reports = SqlAnalyticsReports(db)
    await record(db, "start", 0, SearchPerformed("edge", 0))
    await record(db, "end", 60 * 24, SearchPerformed("edge", 0))
    assert (await reports.search(PERIOD)).searches == 2
    empty = Period(T0 - timedelta(days=30), T0 - timedelta(days=29))
    assert (await reports.funnel(empty)).overall_conversion == 0.0
    assert (await reports.search(empty)).searches == 0
    assert (await reports.payments(empty)).amounts == ()
    assert (await reports.carts(empty, timedelta(hours=1), T0)).abandonment_rate == 0.0
    sessions = await reports.sessions(empty)
    assert (sessions.sessions, sessions.median_duration_s, sessions.events_per_session) == (0, 0.0, 0.0)


async def test_payments_by_day(db):
    reports = SqlAnalyticsReports(db)
    await record(db, "a", 0, PaymentAttempted(uid(), "succeeded", "card", Money(1, "EUR")))
    await record(db, "a", 1, PaymentAttempted(uid(), "declined", "card", Money(1, "EUR")))
    await record(db, "a", 60 * 24, PaymentAttempted(uid(), "succeeded", "card", Money(1, "EUR")))
    days = await reports.payments_by_day(PERIOD)
    assert [(d.day, d.succeeded, d.failed) for d in days] == [("2026-11-28", 1, 1), ("2026-11-29", 1, 0)]


async def test_prune_deletes_only_events_before_the_cutoff(db):
    reports = SqlAnalyticsReports(db)
    await record(db, "old", 0, SearchPerformed("old", 1))
    await record(db, "new", 10, SearchPerformed("new", 1))
    assert await reports.prune(at(5)) == 1
    assert await count(db, "analytics_events") == 1
    assert await reports.prune(at(5)) == 0


# --- the seller dashboard ---------------------------------------------------------------------------------


async def test_a_seller_sees_only_their_own_sales_views_and_conversion(db):
    me, other = await add_user(db, Role.SELLER), await add_user(db, Role.SELLER)
    buyer = await add_user(db, Role.BUYER)
    mug = await add_item(db, me, title="Mug", price_cents=1000)
    cup = await add_item(db, me, title="Cup", price_cents=300, currency="USD")
    hat = await add_item(db, other, title="Hat", price_cents=5000)
    orders = SqlOrderRepository(db)

    async def paid(session, minutes, *lines, status=OrderStatus.PAID):
        order = new_order(buyer, lines, created_at=at(minutes), status=status)
        currency = lines[0][0].price.currency
        total = Money(order.total.cents, currency)
        order = dataclasses.replace(
            order, total=total, payment=dataclasses.replace(order.payment, amount=total)
        )
        await orders.add(order)
        if status is OrderStatus.PAID:
            await record(db, session, minutes, OrderPaid(order.id, order.total))
        return order

    await record(db, "v1", 0, ItemViewed(mug.id, me.id), ItemViewed(hat.id, other.id))
    await paid("v1", 1, (mug, 2), (hat, 1))
    await record(db, "v2", 0, ItemViewed(mug.id, me.id))
    await record(db, "v3", 0, ItemViewed(cup.id, me.id))
    await paid("v3", 2, (cup, 3))
    await paid("v4", 3, (mug, 5), status=OrderStatus.PAYMENT_FAILED)  # not revenue

    board = await SqlAnalyticsReports(db).seller_dashboard(me.id, PERIOD)
    assert [(r.currency, r.revenue.cents, r.orders, r.units) for r in board.revenue] == [
        ("EUR", 2000, 1, 2),
        ("USD", 900, 1, 3),
    ]
    assert (board.orders, board.units, board.views) == (2, 5, 3)
    assert board.conversion == pytest.approx(2 / 3)  # v1 and v3 bought after viewing; v2 did not
    assert [(i.title, i.units, i.revenue, i.views, i.conversion) for i in board.top_items] == [
        ("Cup", 3, Money(900, "USD"), 1, 1.0),
        ("Mug", 2, Money(2000, "EUR"), 2, 0.5),
    ]
    theirs = await SqlAnalyticsReports(db).seller_dashboard(other.id, PERIOD)
    assert [i.title for i in theirs.top_items] == ["Hat"]
    assert (theirs.orders, theirs.units, theirs.views) == (1, 1, 1)


# --- business gauges --------------------------------------------------------------------------------------


async def test_the_business_gauges_show_the_last_24_hours_reports(db):
    from functools import partial

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from market.adapters.telemetry.business import refresh_business_gauges
    from market.application import analytics
    from market.telemetry.metrics import Instruments
    from tests.support.fakes import FakeClock

    item, buyer = uid(), uid()
    await record(db, "a", 0, ItemViewed(item, uid()), CartChanged(item, "add", 1), user=buyer)
    await record(db, "a", 10, CheckoutStarted(uid(), Money(100, "EUR"), 1), user=buyer)
    await record(db, "b", 0, SearchPerformed("x", 0), CartChanged(item, "add", 1), user=uid())
    await record(db, "c", 0, SearchPerformed("mug", 2), ItemViewed(item, uid()))  # a search success
    await record(db, "old", -60 * 25, ItemViewed(item, uid()))  # outside the 24 hours

    reader = InMemoryMetricReader()
    instruments = Instruments.create(MeterProvider(metric_readers=[reader]).get_meter("test"))
    clock = FakeClock(at(60 * 2))
    run_report = partial(
        analytics.run_report, reports=SqlAnalyticsReports(db), clock=clock, abandon_after=timedelta(hours=1)
    )
    await refresh_business_gauges(run_report, clock.now, instruments)

    points = {
        (metric.name, tuple(sorted(p.attributes.items()))): p.value
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for p in metric.data.data_points
    }
    funnel = {
        dict(attrs)["market.funnel.step"]: value
        for (name, attrs), value in points.items()
        if name == "market.funnel.sessions"
    }
    assert funnel == {"browsed": 3, "carted": 2, "checkout_started": 1, "paid": 0}
    assert points[("market.cart.abandonment_rate", ())] == pytest.approx(0.5)
    # "b" searched with no results and then carted: not a success; "c" found results and viewed one.
    assert points[("market.search.success_rate", ())] == pytest.approx(0.5)
    assert points[("market.session.duration", (("market.statistic", "median"),))] == pytest.approx(0.0)
    assert points[("market.session.duration", (("market.statistic", "p95"),))] == pytest.approx(
        statistics.quantiles([0, 0, 600], n=100, method="inclusive")[94]
    )
