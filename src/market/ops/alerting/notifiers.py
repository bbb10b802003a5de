"""Where alert notifications go: a Slack-compatible incoming webhook, and e-mail over SMTP.

`send` raises `NotificationFailed` with a message fit for a log line: never the webhook URL (it is the secret)
nor the SMTP password.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from market import __version__
from market.config import SmtpURL

SLACK_TIMEOUT_S = 5.0
SMTP_TIMEOUT_S = 10.0
"""Per socket operation; a whole send is bounded by `SMTP_DEADLINE_S`."""
SMTP_DEADLINE_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AlertMessage:
    subject: str
    """One line: e-mail subject."""
    text: str
    """The message (Slack text, e-mail body)."""


class NotificationFailed(Exception):
    """A notification did not get through; the message says why, without secrets."""


class Notifier(Protocol):
    name: str
    """`slack` or `email`, for logs."""

    async def send(self, message: AlertMessage) -> None:
        """Deliver one message or raise NotificationFailed."""

    async def close(self) -> None: ...


class SlackWebhookNotifier:
    """POST `{"text": ...}` to an incoming webhook (Slack, Mattermost, Rocket.Chat, Teams' Slack-compatible
    connectors); any 2xx is delivered. Redirects are not followed."""

    name = "slack"

    def __init__(self, url: str, *, timeout_s: float = SLACK_TIMEOUT_S) -> None:
        self._url = url
        self._host = urlsplit(url).hostname or "?"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"user-agent": f"market-alerts/{__version__}"},
        )

    async def send(self, message: AlertMessage) -> None:
        try:
            response = await self._client.post(self._url, json={"text": message.text})
        except httpx.HTTPError as exc:
            raise NotificationFailed(f"webhook at {self._host}: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise NotificationFailed(f"webhook at {self._host} answered {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


def default_sender() -> str:
    return f"market@{socket.gethostname() or 'localhost'}"


class SmtpEmailNotifier:
    """One e-mail per message to every recipient, through smtplib in a daemon thread (an SMTP server that
    hangs must not hold the event loop, nor the process's exit)."""

    name = "email"

    def __init__(
        self,
        server: SmtpURL,
        recipients: Sequence[str],
        sender: str,
        *,
        timeout_s: float = SMTP_TIMEOUT_S,
        deadline_s: float = SMTP_DEADLINE_S,
    ) -> None:
        self._server = server
        self._recipients = tuple(recipients)
        self._sender = sender
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s

    async def send(self, message: AlertMessage) -> None:
        try:
            await asyncio.wait_for(_in_daemon_thread(self._send, message), self._deadline_s)
        except TimeoutError:
            raise NotificationFailed(
                f"SMTP {self._server.host}:{self._server.port}: no answer within {self._deadline_s:g} s"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise NotificationFailed(
                f"SMTP {self._server.host}:{self._server.port}: {type(exc).__name__}: {_smtp_reason(exc)}"
            ) from None

    def _send(self, message: AlertMessage) -> None:
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = self._sender
        email["To"] = ", ".join(self._recipients)
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        email.set_content(message.text)
        server = self._server
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=self._timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self._timeout_s)
        with smtp:
            smtp.ehlo()
            if not server.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            if server.username:
                smtp.login(server.username, server.password or "")
            smtp.send_message(email, from_addr=self._sender, to_addrs=list(self._recipients))

    async def close(self) -> None:
        return None


def _smtp_reason(exc: BaseException) -> str:
    """The server's answer for SMTP errors (code and text), the OS error otherwise; never credentials."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        )
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"{len(exc.recipients)} recipient(s) refused"
    return str(exc) or type(exc).__name__


async def _in_daemon_thread(function: Callable[[AlertMessage], T], message: AlertMessage) -> T:
    """`asyncio.to_thread`, but in a daemon thread: the default executor's threads are joined at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            settle = functools.partial(_settle, future, function(message), None)
        except BaseException as exc:
            settle = functools.partial(_settle, future, None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this any more
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="alert-email", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():  # given up on (deadline, shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
