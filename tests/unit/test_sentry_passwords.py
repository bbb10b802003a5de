"""Passwords never reach Sentry, even from the local variables of a password change that failed unexpectedly."""

from __future__ import annotations

from typing import Any

import msgspec
import sentry_sdk
from sentry_sdk.scrubber import EventScrubber
from sentry_sdk.transport import Transport
from sentry_sdk.utils import event_from_exception

from market.telemetry.sentry import DENYLIST, scrub_event

CURRENT, NEW, HASH = "hunter2-current-pw", "hunter2-brand-new-pw", "$argon2id$v=19$m=65536$c2VjcmV0LWhhc2g"


class PasswordChangeBody(msgspec.Struct):  # shaped like the controller's body, whose repr holds both
    current_password: str
    new_password: str


class CapturingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Any] = []

    def capture_envelope(self, envelope: Any) -> None:
        self.envelopes.append(envelope)


def _store_new_password(data: PasswordChangeBody, current_password: str, new_password: str) -> None:
    password_hash = HASH  # noqa: F841 - a local variable Sentry would report
    raise ConnectionError("the database went away")


def test_a_failed_password_change_sends_no_password_nor_hash_to_sentry():
    transport = CapturingTransport()
    # The privacy-relevant options of market.telemetry.sentry.init_sentry, on a client of its own.
    client = sentry_sdk.Client(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        include_local_variables=True,
        event_scrubber=EventScrubber(denylist=DENYLIST, recursive=True),
        before_send=scrub_event,
    )
    try:
        _store_new_password(PasswordChangeBody(CURRENT, NEW), CURRENT, NEW)
    except ConnectionError as exc:
        event, hint = event_from_exception(exc, client_options=client.options)
        assert client.capture_event(event, hint=hint, scope=sentry_sdk.Scope())
    client.close()

    payload = b"".join(envelope.serialize() for envelope in transport.envelopes)
    assert b"the database went away" in payload  # the event itself did go out
    assert b"current_password" in payload  # with the variables, only their values hidden
    leaks = [secret for secret in (CURRENT, NEW, HASH) if secret.encode() in payload]
    assert leaks == []
