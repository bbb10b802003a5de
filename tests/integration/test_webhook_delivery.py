"""Seller webhook delivery against real databases (both engines) and a real HTTP receiver on 127.0.0.1:
claiming due rows safely with several workers, signing, retries on the schedule, 410, redirects, the SSRF guard
at send time, the attempt's CLIENT span and metric, and the seller's delivery list."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from standardwebhooks import Webhook

from market.adapters.db.commerce import SqlWebhookOutbox
from market.adapters.db.database import Database
from market.adapters.db.webhooks import PiccoloSellerWebhookRepository, SqlWebhookDeliveryRepository
from market.adapters.webhooks.sender import HttpxWebhookSender
from market.adapters.webhooks.signing import new_secret
from market.adapters.webhooks.ssrf import REFUSED, SsrfGuard
from market.adapters.webhooks.worker import WebhookDeliveryWorker
from market.application.seller_webhooks import deliver_due_webhooks, set_seller_webhook
from market.domain.errors import InvalidCursor
from market.domain.money import Money
from market.domain.orders import Order, OrderLine, OrderStatus
from market.domain.users import User
from market.domain.webhooks import AttemptResult, DeliveryStatus, Verdict, WebhookEndpoint
from market.telemetry import names
from tests.support.database import add_user, open_database
from tests.support.fakes import FakeClock
from tests.support.servers.webhook_receiver import down_receiver_port, running_receiver

LEASE = timedelta(seconds=60)
SCHEDULE = (5, 60)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC), step=timedelta(0))  # signatures need a time close to the real one


@pytest.fixture
def telemetry():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter(names.INSTRUMENTATION_SCOPE)
    name, unit, description = names.WEBHOOK_DELIVERIES
    counter = meter.create_counter(name, unit=unit, description=description)
    return tracer_provider.get_tracer(names.INSTRUMENTATION_SCOPE), exporter, counter, reader


@pytest.fixture
async def sender(telemetry):
    tracer, _, counter, _ = telemetry
    sender = HttpxWebhookSender(
        SsrfGuard(allow_private=True), tracer=tracer, deliveries_counter=counter, timeout_s=5
    )
    yield sender
    await sender.close()


async def seller_with_endpoint(db: Database, url: str, **overrides) -> tuple[User, WebhookEndpoint]:
    seller = await add_user(db)
    now = datetime.now(UTC)
    endpoint = WebhookEndpoint(seller.id, url, new_secret(), now, now, **overrides)
    await PiccoloSellerWebhookRepository(db).save(endpoint)
    return seller, endpoint


def random_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


async def queue_order_paid(
    db: Database, *sellers: User, now: datetime, traceparent: str | None = None
) -> Order:
    """An `order.paid` event for each seller, queued by the real outbox."""
    order = Order(
        id=str(uuid.uuid4()),
        buyer_id=str(uuid.uuid4()),
        status=OrderStatus.PAID,
        lines=tuple(
            OrderLine(str(uuid.uuid4()), s.id, f"Mug {n}", 2, Money(1500, "EUR"))
            for n, s in enumerate(sellers)
        ),
        total=Money(3000 * len(sellers), "EUR"),
        created_at=now,
        updated_at=now,
        traceparent=traceparent,
    )
    await SqlWebhookOutbox(db).enqueue_order_paid(order, now)
    return order


async def deliveries_of(db: Database, seller: User) -> list[dict]:
    rows = await db.fetch(
        "SELECT id, status, attempts, next_attempt_at, last_status_code, last_error FROM webhook_deliveries"
        " WHERE seller_id = {} ORDER BY created_at, id",
        seller.id,
    )
    return [dict(r) | {"id": str(r["id"])} for r in rows]


async def attempts_of(db: Database, delivery_id: str) -> list[dict]:
    rows = await db.fetch(
        "SELECT attempted_at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id = {}"
        " ORDER BY attempted_at",
        delivery_id,
    )
    return [dict(r) for r in rows]


def run(db: Database, sender: HttpxWebhookSender, clock: FakeClock, **kwargs):
    return deliver_due_webhooks(
        deliveries=SqlWebhookDeliveryRepository(db),
        sender=sender,
        clock=clock,
        retry_schedule_s=kwargs.pop("schedule", SCHEDULE),
        **kwargs,
    )


def counted(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    totals: dict[tuple[str, str], int] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name != names.WEBHOOK_DELIVERIES[0]:
                    continue
                for point in metric.data.data_points:
                    key = (point.attributes[names.WEBHOOK_DIRECTION], point.attributes[names.WEBHOOK_OUTCOME])
                    totals[key] = point.value
    return totals


# --- claiming ---------------------------------------------------------------------------------------------


async def test_a_claim_takes_only_due_pending_rows_and_leases_them(db, clock):
    seller, _ = await seller_with_endpoint(db, "https://93.184.215.14/hook")
    for _ in range(3):
        await queue_order_paid(db, seller, now=clock.now())
    due, later, settled = [d["id"] for d in await deliveries_of(db, seller)]
    await db.fetch(
        "UPDATE webhook_deliveries SET next_attempt_at = {} WHERE id = {}",
        clock.now() + timedelta(hours=1),
        later,
    )
    await db.fetch("UPDATE webhook_deliveries SET status = 'delivered' WHERE id = {}", settled)
    repo = SqlWebhookDeliveryRepository(db)

    claimed = await repo.claim_due(clock.now(), 10, LEASE)
    assert [c.id for c in claimed] == [due]
    assert claimed[0].endpoint is not None and claimed[0].endpoint.seller_id == seller.id
    assert json.loads(claimed[0].payload)["type"] == "order.paid"
    assert await repo.claim_due(clock.now() + timedelta(seconds=59), 10, LEASE) == []  # leased

    clock.advance(61)  # the claimer died: the lease ran out and the row is due again
    assert [c.id for c in await repo.claim_due(clock.now(), 10, LEASE)] == [due]


async def test_concurrent_claimers_on_two_connections_never_share_a_row(db, database_url, clock):
    seller, _ = await seller_with_endpoint(db, "https://93.184.215.14/hook")
    for _ in range(40):
        await queue_order_paid(db, seller, now=clock.now())
    other = open_database(database_url)
    await other.start()
    try:
        repos = [SqlWebhookDeliveryRepository(d) for d in (db, other, db, other)]

        async def drain(repo: SqlWebhookDeliveryRepository) -> list[str]:
            taken: list[str] = []
            while batch := await repo.claim_due(clock.now(), 3, LEASE):
                taken += [c.id for c in batch]
            return taken

        claims = await asyncio.gather(*(drain(r) for r in repos))
    finally:
        await other.close()
    everything = [i for taken in claims for i in taken]
    assert len(everything) == 40
    assert len(set(everything)) == 40, Counter(everything).most_common(3)


async def test_a_row_locked_by_another_claimer_is_skipped_without_waiting(fresh_postgres_url, clock):
    db = open_database(fresh_postgres_url)
    await db.start()
    await db.migrate()
    locker = await asyncpg.connect(fresh_postgres_url)
    try:
        seller, _ = await seller_with_endpoint(db, "https://93.184.215.14/hook")
        await queue_order_paid(db, seller, now=clock.now())
        clock.advance(0.001)
        await queue_order_paid(db, seller, now=clock.now())
        first, second = [d["id"] for d in await deliveries_of(db, seller)]
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("SELECT id FROM webhook_deliveries WHERE id = $1 FOR UPDATE", uuid.UUID(first))

        claimed = await asyncio.wait_for(
            SqlWebhookDeliveryRepository(db).claim_due(clock.now(), 10, LEASE), timeout=5
        )
        assert [c.id for c in claimed] == [second]
        await transaction.rollback()
    finally:
        await locker.close()
        await db.close()


async def test_a_worker_whose_lease_ran_out_leaves_the_state_to_the_new_owner(db, clock):
    seller, _ = await seller_with_endpoint(db, "https://93.184.215.14/hook")
    await queue_order_paid(db, seller, now=clock.now())
    repo = SqlWebhookDeliveryRepository(db)
    (slow,) = await repo.claim_due(clock.now(), 10, LEASE)
    clock.advance(61)
    (fresh,) = await repo.claim_due(clock.now(), 10, LEASE)

    await repo.record_attempt(
        fresh, AttemptResult(200, None, 40), Verdict(DeliveryStatus.DELIVERED), clock.now()
    )
    late = Verdict(DeliveryStatus.PENDING, next_attempt_at=clock.now() + timedelta(seconds=5))
    await repo.record_attempt(slow, AttemptResult(500, "HTTP 500", 9000), late, clock.now())

    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "delivered" and row["next_attempt_at"] is None
    assert row["attempts"] == 2
    assert len(await attempts_of(db, row["id"])) == 2


# --- delivering ---------------------------------------------------------------------------------------------


async def test_a_delivery_is_signed_verifiable_and_traced_as_a_client_span_of_the_checkout(
    db, clock, sender, telemetry
):
    _, exporter, _, reader = telemetry
    with running_receiver(200) as receiver:
        seller, endpoint = await seller_with_endpoint(db, receiver.url + "?token=receiver-secret")
        checkout_trace = random_traceparent()
        order = await queue_order_paid(db, seller, now=clock.now(), traceparent=checkout_trace)

        reports = await run(db, sender, clock)

    (request,) = receiver.received()
    (row,) = await deliveries_of(db, seller)
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "order.paid"
    assert payload["data"]["order_id"] == order.id
    assert payload["data"]["seller_total_cents"] == 3000
    assert request.headers["webhook-id"] == row["id"]
    assert request.headers["content-type"] == "application/json"
    assert request.path == "/hooks/market?token=receiver-secret"
    assert [r.verdict.status for r in reports] == [DeliveryStatus.DELIVERED]
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["last_status_code"] == 200
    assert row["next_attempt_at"] is None
    (attempt,) = await attempts_of(db, row["id"])
    assert attempt["status_code"] == 200 and attempt["error"] is None and attempt["duration_ms"] >= 0

    (span,) = exporter.get_finished_spans()
    assert span.name == names.SPAN_WEBHOOK_DELIVER and span.kind is SpanKind.CLIENT
    assert format(span.context.trace_id, "032x") == checkout_trace.split("-")[1]  # joins the checkout's trace
    assert format(span.parent.span_id, "016x") == checkout_trace.split("-")[2]
    assert request.headers["traceparent"].split("-")[1:3] == [
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
    ]
    attrs = span.attributes
    assert attrs[names.URL_FULL] == receiver.url  # no query: it may hold the receiver's token
    assert attrs[names.HTTP_RESPONSE_STATUS_CODE] == 200
    assert attrs[names.WEBHOOK_DIRECTION] == "outbound" and attrs[names.WEBHOOK_OUTCOME] == "success"
    assert attrs[names.WEBHOOK_DELIVERY_ID] == row["id"] and attrs[names.WEBHOOK_ATTEMPT] == 1
    assert span.status.status_code is not StatusCode.ERROR
    assert "receiver-secret" not in json.dumps(dict(attrs))
    assert counted(reader) == {("outbound", "success"): 1}


async def test_failures_are_retried_on_the_schedule_with_the_same_id_then_fail(db, clock, sender, telemetry):
    _, exporter, _, reader = telemetry
    with running_receiver(500) as receiver:
        seller, _ = await seller_with_endpoint(db, receiver.url)
        await queue_order_paid(db, seller, now=clock.now())
        first_attempt_at = clock.now()

        await run(db, sender, clock)
        (row,) = await deliveries_of(db, seller)
        assert row["status"] == "pending" and row["attempts"] == 1
        assert row["last_status_code"] == 500 and row["last_error"] == "HTTP 500"
        assert row["next_attempt_at"] == first_attempt_at + timedelta(seconds=SCHEDULE[0])

        clock.advance(SCHEDULE[0] - 1)
        assert await run(db, sender, clock) == []  # not due yet
        clock.advance(1)
        await run(db, sender, clock)
        (row,) = await deliveries_of(db, seller)
        assert row["status"] == "pending" and row["attempts"] == 2
        assert row["next_attempt_at"] == clock.now() + timedelta(seconds=SCHEDULE[1])

        clock.advance(SCHEDULE[1])
        await run(db, sender, clock)
        clock.advance(3600)
        assert await run(db, sender, clock) == []

    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "failed" and row["attempts"] == 3 and row["next_attempt_at"] is None
    assert [a["status_code"] for a in await attempts_of(db, row["id"])] == [500, 500, 500]
    assert {r.headers["webhook-id"] for r in receiver.received()} == {row["id"]}
    assert len(receiver.received()) == 3
    spans = exporter.get_finished_spans()
    assert [s.attributes[names.WEBHOOK_ATTEMPT] for s in spans] == [1, 2, 3]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert counted(reader) == {("outbound", "failure"): 3}


async def test_a_receiver_that_is_down_is_retried_and_gets_the_event_once_it_is_back(db, clock, sender):
    receiver = down_receiver_port()
    seller, endpoint = await seller_with_endpoint(db, receiver.url)
    await queue_order_paid(db, seller, now=clock.now())

    await run(db, sender, clock)
    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "pending" and row["last_status_code"] is None
    assert row["last_error"].startswith("connection failed")

    receiver.start()
    try:
        clock.advance(SCHEDULE[0])
        await run(db, sender, clock)
    finally:
        receiver.stop()
    (request,) = receiver.received()
    Webhook(endpoint.secret).verify(request.body, request.headers)
    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "delivered" and row["attempts"] == 2


async def test_410_disables_the_endpoint_and_stops_the_sellers_other_deliveries(db, clock, sender):
    with running_receiver(410) as receiver:
        seller, _ = await seller_with_endpoint(db, receiver.url)
        await queue_order_paid(db, seller, now=clock.now())
        clock.advance(0.001)
        await queue_order_paid(db, seller, now=clock.now())

        await run(db, sender, clock, batch_size=1)
        assert len(receiver.received()) == 1
        assert [d["status"] for d in await deliveries_of(db, seller)] == ["disabled", "disabled"]
        endpoint = await PiccoloSellerWebhookRepository(db).get(seller.id)
        assert endpoint is not None and endpoint.disabled_at is not None

        # Nothing more is sent, nor queued, until the seller sets the URL again.
        assert await run(db, sender, clock) == []
        assert (
            await queue_order_paid(db, seller, now=clock.now()) and len(await deliveries_of(db, seller)) == 2
        )
        receiver.respond_with(200)
        again = await set_seller_webhook(
            seller,
            receiver.url,
            endpoints=PiccoloSellerWebhookRepository(db),
            guard=SsrfGuard(allow_private=True),
            new_secret=new_secret,
            clock=clock,
        )
        assert again.enabled and again.secret == endpoint.secret
        clock.advance(1)
        await queue_order_paid(db, seller, now=clock.now())
        await run(db, sender, clock)
    assert [d["status"] for d in await deliveries_of(db, seller)] == ["disabled", "disabled", "delivered"]
    assert len(receiver.received()) == 2


async def test_concurrent_first_settings_all_answer_with_the_secret_that_is_stored(db, clock):
    # A client that retries a slow PUT, or sends two at once: each answer's secret is the one deliveries are
    # signed with, never one that another request overwrote meanwhile (the seller would configure it and
    # reject every event).
    seller = await add_user(db)
    endpoints = PiccoloSellerWebhookRepository(db)

    async def put(n: int) -> WebhookEndpoint:
        return await set_seller_webhook(
            seller,
            f"https://93.184.215.14/hooks/{n}",
            endpoints=endpoints,
            guard=SsrfGuard(allow_private=True),
            new_secret=new_secret,
            clock=clock,
        )

    answers = await asyncio.gather(*(put(n) for n in range(10)))
    stored = await endpoints.get(seller.id)
    assert stored is not None
    assert {a.secret for a in answers} == {stored.secret}
    assert stored.url in {a.url for a in answers}


async def test_a_410_from_a_url_the_seller_has_since_replaced_leaves_the_new_one_enabled(db, clock):
    seller, endpoint = await seller_with_endpoint(db, "https://93.184.215.14/old")
    await queue_order_paid(db, seller, now=clock.now())
    repo = SqlWebhookDeliveryRepository(db)
    (claim,) = await repo.claim_due(clock.now(), 10, LEASE)
    await PiccoloSellerWebhookRepository(db).save(
        WebhookEndpoint(seller.id, "https://93.184.215.14/new", endpoint.secret, clock.now(), clock.now())
    )
    gone = Verdict(DeliveryStatus.DISABLED, disable_endpoint=True)
    await repo.record_attempt(claim, AttemptResult(410, "HTTP 410", 5), gone, clock.now())
    current = await PiccoloSellerWebhookRepository(db).get(seller.id)
    assert current is not None and current.enabled and current.url.endswith("/new")


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(db, clock, sender):
    with running_receiver(302) as receiver:
        seller, _ = await seller_with_endpoint(db, receiver.url)
        await queue_order_paid(db, seller, now=clock.now())
        await run(db, sender, clock)
    assert [r.path for r in receiver.received()] == ["/hooks/market"]
    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "pending" and row["last_status_code"] == 302
    assert "redirect" in row["last_error"]


async def test_private_targets_are_refused_again_at_send_time(db, clock, telemetry):
    tracer, exporter, counter, _ = telemetry
    guarded = HttpxWebhookSender(SsrfGuard(allow_private=False), tracer=tracer, deliveries_counter=counter)
    try:
        with running_receiver(200) as receiver:
            # Stored while the development setting was on (or before the name's DNS changed).
            seller, _ = await seller_with_endpoint(db, receiver.url)
            await queue_order_paid(db, seller, now=clock.now())
            await run(db, guarded, clock)
    finally:
        await guarded.close()
    assert receiver.received() == []
    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "pending" and row["last_status_code"] is None
    # The seller reads this error: it says no more than the refusal did when the URL was set.
    assert row["last_error"] == f"not sent: {REFUSED}"
    (span,) = exporter.get_finished_spans()
    assert span.attributes[names.ERROR_TYPE] == "address_not_allowed"


class _PinnedGuard(SsrfGuard):
    """Resolves every host to the test receiver, as the real guard hands out the addresses it checked."""

    def __init__(self) -> None:
        super().__init__(allow_private=False)

    async def addresses(self, url: str) -> list[str] | None:
        return ["127.0.0.1"]


async def test_the_sender_connects_to_the_checked_address_keeping_the_host_name(db, clock):
    pinned = HttpxWebhookSender(_PinnedGuard())
    try:
        with running_receiver(204) as receiver:
            # A name no resolver knows: the request can only arrive if the checked address is used.
            seller, _ = await seller_with_endpoint(db, f"http://hooks.example.invalid:{receiver.port}/in")
            await queue_order_paid(db, seller, now=clock.now())
            await run(db, pinned, clock)
    finally:
        await pinned.close()
    (request,) = receiver.received()
    assert request.headers["host"] == f"hooks.example.invalid:{receiver.port}"
    assert (await deliveries_of(db, seller))[0]["status"] == "delivered"


async def test_a_host_name_the_http_client_cannot_encode_is_a_failed_attempt_not_a_failed_pass(db, clock):
    # The system resolver reads "💩.la" the IDNA 2003 way (a real, public name), httpx refuses it (IDNA 2008):
    # it passed the guard when it was set, and must not make every worker pass raise without recording it.
    pinned = HttpxWebhookSender(_PinnedGuard())
    try:
        seller, _ = await seller_with_endpoint(db, "https://\U0001f4a9.la/hooks")
        await queue_order_paid(db, seller, now=clock.now())
        (report,) = await run(db, pinned, clock)
    finally:
        await pinned.close()
    assert report.result is not None and report.result.status_code is None
    (row,) = await deliveries_of(db, seller)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"].startswith("not sent:")


async def test_a_delivery_whose_endpoint_is_disabled_is_stopped_without_an_attempt(db, clock, sender):
    with running_receiver(200) as receiver:
        seller, endpoint = await seller_with_endpoint(db, receiver.url)
        await queue_order_paid(db, seller, now=clock.now())
        await PiccoloSellerWebhookRepository(db).save(
            WebhookEndpoint(seller.id, endpoint.url, endpoint.secret, clock.now(), clock.now(), clock.now())
        )
        (report,) = await run(db, sender, clock)
    assert report.result is None and receiver.received() == []
    assert [(d["status"], d["attempts"]) for d in await deliveries_of(db, seller)] == [("disabled", 0)]


async def test_two_workers_deliver_every_event_exactly_once(db, database_url, clock):
    other = open_database(database_url)
    await other.start()
    senders = [HttpxWebhookSender(SsrfGuard(allow_private=True)) for _ in range(2)]
    try:
        with running_receiver(200) as receiver:
            sellers = [(await seller_with_endpoint(db, receiver.url))[0] for _ in range(3)]
            for _ in range(8):
                await queue_order_paid(db, *sellers, now=clock.now())
            workers = [
                WebhookDeliveryWorker(SqlWebhookDeliveryRepository(d), s, clock, SCHEDULE, batch_size=4)
                for d, s in zip((db, other), senders, strict=True)
            ]

            async def drain(worker: WebhookDeliveryWorker) -> int:
                done = 0
                while reports := await worker.run_once():
                    done += len(reports)
                return done

            done = await asyncio.gather(*(drain(w) for w in workers))
    finally:
        for s in senders:
            await s.close()
        await other.close()
    ids = [r.headers["webhook-id"] for r in receiver.received()]
    assert sum(done) == 24 and len(ids) == 24
    assert len(set(ids)) == 24, Counter(ids).most_common(3)
    rows = [d for s in sellers for d in await deliveries_of(db, s)]
    assert {(d["status"], d["attempts"]) for d in rows} == {("delivered", 1)}


@asynccontextmanager
async def worker_running(
    db: Database, sender: HttpxWebhookSender, grace_s: float = 3.0
) -> AsyncIterator[FakeClock]:
    """The delivery worker's loop in the background, polling every 50 ms, stopped (within 5 s) on the way out;
    its clock, stopped at the start (deliveries are due by it)."""
    clock = FakeClock(datetime.now(UTC), step=timedelta(0))
    worker = WebhookDeliveryWorker(
        SqlWebhookDeliveryRepository(db), sender, clock, SCHEDULE, poll_interval_s=0.05
    )
    worker.start()
    try:
        yield clock
    finally:
        await asyncio.wait_for(worker.stop(grace_s), timeout=5)


async def test_the_worker_loop_delivers_in_the_background_and_stops_promptly(db, sender):
    with running_receiver(200) as receiver:
        seller, _ = await seller_with_endpoint(db, receiver.url)
        async with worker_running(db, sender) as clock:
            await queue_order_paid(db, seller, now=clock.now())
            for _ in range(100):
                if receiver.received():
                    break
                await asyncio.sleep(0.05)
    assert len(receiver.received()) == 1


async def test_an_endpoint_that_hangs_does_not_hold_up_deliveries_that_fall_due_meanwhile(db, sender):
    """A tarpit (a port that accepts connections and never answers) keeps its attempt in flight up to the
    sender's timeout (5 s here): another seller's delivery queued meanwhile goes out on the next poll."""
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(16)  # never accepted: the kernel completes the handshake, nobody reads or answers
    try:
        with running_receiver(200) as receiver:
            slow, _ = await seller_with_endpoint(db, f"http://127.0.0.1:{tarpit.getsockname()[1]}/hook")
            quick, _ = await seller_with_endpoint(db, receiver.url)
            async with worker_running(db, sender, grace_s=0.1) as clock:
                await queue_order_paid(db, slow, now=clock.now())
                await asyncio.sleep(0.5)  # its pass is waiting on the tarpit now
                queued = time.monotonic()
                await queue_order_paid(db, quick, now=clock.now())
                (received,) = await asyncio.to_thread(receiver.wait_for, 1, 4.0)
    finally:
        tarpit.close()
    assert received.at - queued < 2.0  # not after the tarpit's 5 s timeout


# --- the seller's list ----------------------------------------------------------------------------------------


async def test_a_seller_lists_only_their_deliveries_newest_first_with_attempts(db, clock, sender):
    with running_receiver(500) as receiver:
        seller, _ = await seller_with_endpoint(db, receiver.url)
        other, _ = await seller_with_endpoint(db, receiver.url)
        for _ in range(3):
            await queue_order_paid(db, seller, other, now=clock.now())
            clock.advance(1)
        await run(db, sender, clock)
        clock.advance(SCHEDULE[0])
        await run(db, sender, clock)
    repo = SqlWebhookDeliveryRepository(db)

    first = await repo.list_for_seller(seller.id, 2, None)
    rest = await repo.list_for_seller(seller.id, 2, first.next_cursor)
    assert first.next_cursor is not None and rest.next_cursor is None
    listed = [*first.items, *rest.items]
    assert [d.id for d in listed] == [d["id"] for d in reversed(await deliveries_of(db, seller))]
    assert {d.seller_id for d in listed} == {seller.id}
    for delivery in listed:
        assert delivery.status is DeliveryStatus.PENDING and delivery.attempt_count == 2
        assert [a.status_code for a in delivery.attempts] == [500, 500]
        assert delivery.attempts[0].attempted_at <= delivery.attempts[1].attempted_at
        assert delivery.last_status_code == 500 and delivery.next_attempt_at is not None
    assert len((await repo.list_for_seller(other.id, 10, None)).items) == 3
    stranger = await add_user(db)
    assert (await repo.list_for_seller(stranger.id, 10, None)).items == []
    with pytest.raises(InvalidCursor):
        await repo.list_for_seller(seller.id, 2, "bm90LW91cnM")
