"""Alert notifications against real local servers (an HTTP receiver standing in for Slack, an SMTP sink), and the
monitor that sends them: once per change of state, in order, retried, never blocking, one sender per host."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from market.config import SmtpURL
from market.ops.alerting.monitor import AlertMonitor, FileLease, describe
from market.ops.alerting.notifiers import (
    AlertMessage,
    NotificationFailed,
    SlackWebhookNotifier,
    SmtpEmailNotifier,
)
from market.ops.alerting.rules import AlertEvaluator, Reading, default_rules
from tests.support.fakes import FakeClock
from tests.support.servers.smtp_sink import SmtpSink
from tests.support.servers.webhook_receiver import down_receiver_port, running_receiver

MESSAGE = AlertMessage(
    subject="[FIRING] payment_failures (critical)", text="[FIRING] payment_failures: 100 %"
)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(require_auth=("alerts@example.com", "s3cret/1")).start()
    yield sink
    sink.stop()


# --- Slack-compatible webhook ---------------------------------------------------------------------------


async def test_slack_notifier_posts_the_text_as_json():
    with running_receiver() as receiver:
        notifier = SlackWebhookNotifier(receiver.url)
        await notifier.send(MESSAGE)
        await notifier.close()
        (request,) = receiver.received()
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"text": MESSAGE.text}


@pytest.mark.parametrize("status", [400, 404, 500])
async def test_slack_notifier_fails_on_a_non_2xx_answer_without_revealing_the_url(status):
    with running_receiver(status) as receiver:
        notifier = SlackWebhookNotifier(receiver.url + "/T000/B000/secret-token")
        with pytest.raises(NotificationFailed, match=str(status)) as failure:
            await notifier.send(MESSAGE)
        await notifier.close()
    assert "secret-token" not in str(failure.value)


async def test_slack_notifier_fails_when_nobody_listens():
    notifier = SlackWebhookNotifier(down_receiver_port().url)
    with pytest.raises(NotificationFailed, match="ConnectError"):
        await notifier.send(MESSAGE)
    await notifier.close()


async def test_slack_notifier_gives_up_after_its_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        notifier = SlackWebhookNotifier(f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(NotificationFailed, match="Timeout"):
            await notifier.send(MESSAGE)
        assert time.monotonic() - started < 3
        await notifier.close()


# --- e-mail -----------------------------------------------------------------------------------------------


async def test_email_notifier_authenticates_and_sends_to_every_recipient(smtp_sink):
    server = SmtpURL.parse(f"smtp://alerts%40example.com:s3cret%2F1@127.0.0.1:{smtp_sink.port}")
    notifier = SmtpEmailNotifier(server, ["oncall@example.com", "sre@example.com"], "market@example.com")
    await notifier.send(MESSAGE)
    (mail,) = smtp_sink.received()
    assert mail.auth == ("alerts@example.com", "s3cret/1")
    assert mail.sender == "market@example.com"
    assert mail.recipients == ["oncall@example.com", "sre@example.com"]
    assert mail.message["Subject"] == MESSAGE.subject
    assert mail.message["To"] == "oncall@example.com, sre@example.com"
    assert mail.message["Message-ID"] and mail.message["Date"]
    assert mail.message.get_content().strip() == MESSAGE.text


async def test_email_notifier_reports_wrong_credentials_without_the_password(smtp_sink):
    server = SmtpURL.parse(f"smtp://alerts%40example.com:wrong-password@127.0.0.1:{smtp_sink.port}")
    notifier = SmtpEmailNotifier(server, ["oncall@example.com"], "market@example.com")
    with pytest.raises(NotificationFailed, match="535") as failure:
        await notifier.send(MESSAGE)
    assert "wrong-password" not in str(failure.value)
    assert smtp_sink.received() == []


async def test_email_notifier_reports_a_refusal():
    sink = SmtpSink(reject_with="550 5.7.1 relaying denied").start()
    try:
        notifier = SmtpEmailNotifier(SmtpURL.parse(sink.url), ["oncall@example.com"], "market@example.com")
        with pytest.raises(NotificationFailed, match="550"):
            await notifier.send(MESSAGE)
    finally:
        sink.stop()


async def test_email_notifier_fails_when_nobody_listens():
    port = down_receiver_port().port
    notifier = SmtpEmailNotifier(
        SmtpURL.parse(f"smtp://127.0.0.1:{port}"), ["a@example.com"], "m@example.com"
    )
    with pytest.raises(NotificationFailed, match="ConnectionRefused"):
        await notifier.send(MESSAGE)


# --- the monitor --------------------------------------------------------------------------------------------


class FakeNotifier:
    """Records what it was sent; fails the first `failures` attempts; may hang."""

    def __init__(self, name: str = "fake", failures: int = 0, hang: bool = False) -> None:
        self.name = name
        self.failures = failures
        self.hang = hang
        self.attempts = 0
        self.sent: list[AlertMessage] = []
        self.closed = False

    async def send(self, message: AlertMessage) -> None:
        self.attempts += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures:
            self.failures -= 1
            raise NotificationFailed("receiver down")
        self.sent.append(message)

    async def close(self) -> None:
        self.closed = True


class Scenario:
    """A monitor over scripted readings; `tick()` advances 15 s and evaluates."""

    def __init__(self, *notifiers: FakeNotifier, lease: FileLease | None = None) -> None:
        self.clock = FakeClock(step=timedelta(0))
        self.reading = Reading()
        self.monitor = AlertMonitor(
            # No hold: these tests are about notifying (the evidence rules: tests/unit/test_alert_rules.py).
            AlertEvaluator(default_rules(backups_scheduled=False, hold=timedelta(0)), self.clock),
            lambda: self.reading,
            interval_s=3600,  # the tests evaluate by hand
            notifiers=notifiers,
            lease=lease,
            origin="market at http://test",
            retry_delays_s=(0.01, 0.01),
        )

    async def start(self) -> None:
        """Start the monitor and wait for its first evaluation (the baseline); it then sleeps for an hour."""
        self.monitor.start()
        for _ in range(500):
            if self.monitor.evaluated_at is not None:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the monitor did not evaluate within 5 s of starting")

    async def tick(self) -> list[str]:
        self.clock.current += timedelta(seconds=15)
        return [f"{t.status.name}:{t.status.state}" for t in await self.monitor.evaluate_once()]

    async def payments(self, attempts: int, failures: int) -> list[str]:
        self.reading = Reading(
            payment_attempts=self.reading.payment_attempts + attempts,
            payment_failures=self.reading.payment_failures + failures,
        )
        return await self.tick()


def subjects(notifier: FakeNotifier) -> list[str]:
    return [m.subject for m in notifier.sent]


async def test_the_monitor_notifies_each_change_of_state_once_in_order():
    slack, email = FakeNotifier("slack"), FakeNotifier("email")
    scenario = Scenario(slack, email)
    await scenario.start()
    try:
        assert await scenario.payments(10, 10) == ["payment_failures:firing"]
        assert await scenario.payments(2, 1) == []  # still firing: nothing new to say
        assert await scenario.tick() == []
        assert await scenario.payments(200, 0) == ["payment_failures:ok"]
        assert await scenario.payments(10, 0) == []
        assert await scenario.monitor.flush(5)
    finally:
        await scenario.monitor.stop()
    expected = ["[FIRING] payment_failures (critical)", "[RESOLVED] payment_failures (critical)"]
    assert subjects(slack) == subjects(email) == expected
    firing, resolved = slack.sent
    assert "market at http://test" in firing.text and "100 %" in firing.text and "10 %" in firing.text
    assert "now 5.19 %" in resolved.text
    assert slack.closed and email.closed


async def test_a_failing_notifier_is_retried_and_does_not_hold_up_the_others():
    flaky, broken, fine = (
        FakeNotifier("flaky", failures=2),
        FakeNotifier("broken", failures=99),
        FakeNotifier(),
    )
    scenario = Scenario(flaky, broken, fine)
    await scenario.start()
    try:
        await scenario.payments(10, 10)
        assert await scenario.monitor.flush(5)
    finally:
        await scenario.monitor.stop()
    assert subjects(flaky) == subjects(fine) == ["[FIRING] payment_failures (critical)"]
    assert flaky.attempts == 3
    assert broken.sent == [] and broken.attempts == 3  # given up after three attempts


async def test_a_hanging_notifier_neither_blocks_evaluation_nor_shutdown():
    hanging = FakeNotifier(hang=True)
    scenario = Scenario(hanging)
    await scenario.start()
    started = time.monotonic()
    assert await scenario.payments(10, 10) == ["payment_failures:firing"]
    assert await scenario.payments(200, 0) == ["payment_failures:ok"]
    await scenario.monitor.stop(grace_s=0.2)
    assert time.monotonic() - started < 2
    assert [s.state for s in scenario.monitor.statuses() if s.name == "payment_failures"] == ["ok"]


async def test_only_the_holder_of_the_lease_notifies(tmp_path: Path):
    holder = FileLease(tmp_path / "alerts.lock")
    assert holder.acquire()
    silent = FakeNotifier()
    follower = Scenario(silent, lease=FileLease(tmp_path / "alerts.lock"))
    await follower.start()
    try:
        assert await follower.payments(10, 10) == ["payment_failures:firing"]  # evaluated all the same
        assert await follower.monitor.flush(1)
        assert silent.sent == []

        holder.release()  # the notifying worker exits: the next change is announced by this one
        assert await follower.payments(200, 0) == ["payment_failures:ok"]
        assert await follower.monitor.flush(5)
    finally:
        await follower.monitor.stop()
    assert subjects(silent) == ["[RESOLVED] payment_failures (critical)"]
    assert FileLease(tmp_path / "alerts.lock").acquire()  # stop() let it go


def test_notification_texts_say_what_where_how_bad_and_since_when():
    clock = FakeClock(step=timedelta(0))
    evaluator = AlertEvaluator(default_rules(backups_scheduled=True, hold=timedelta(0)), clock)
    assert evaluator.observe(Reading()) == []  # scheduled, no backup yet: the age counts from now
    clock.current += timedelta(hours=27)
    (transition,) = evaluator.observe(Reading())
    message = describe(transition, "market at http://example")
    assert message.subject == "[FIRING] backup_stale (warning)"
    assert message.text.startswith(
        "[FIRING] backup_stale (warning) on market at http://example: 27.0 h, above the threshold of 26.0 h, "
        "since 2026-11-29T15:00:00Z."
    )
    assert "last successful backup" in message.text
