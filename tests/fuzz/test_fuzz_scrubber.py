"""Sentry's event scrubber skips the pattern scans for a string none of them can match: over any text mixing the
fragments the patterns look for (in any case) with arbitrary characters, scrubbing with that shortcut gives
exactly what the full scans give. A pattern added without its substring in the shortcut's list fails here."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from market.telemetry import sentry

pytestmark = pytest.mark.fuzz

FRAGMENTS = [
    "ops@example.com",
    "@",
    "https://user:pw@db.example:5432/market",
    "http://api.example/v1?token=t0k3n#frag",
    "://",
    "Bearer abc.def-123",
    "BEARER ",
    "tok_4242abc",
    "pm_card_visa",
    "whsec_AbC+/d=",
    "'cookie': 'session=s3cr3t'",
    "(b'authorization', b'Basic dXNlcjpwdw==')",
    "Set-Cookie",
    "password='hunter2-hunter2'",
    'passwd: "x"',
    "PASSWORD=",
    "def handler(self, request):",
    "pa\u017f\u017fword='hunter2'",  # ſ: the patterns' case-insensitive match takes it for s
    "'author\u0131zation': 'Basic x'",  # ı for i
    "'coo\u212aie': 'session=x'",  # the Kelvin sign for k
    "    return await self._inner(request)",
]
TEXT = st.lists(
    st.sampled_from(FRAGMENTS).map(lambda fragment: fragment.swapcase())
    | st.sampled_from(FRAGMENTS)
    | st.text(),
    max_size=6,
).map("".join)


@pytest.fixture
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentry, "_known_secrets", ())


@pytest.mark.parametrize("text", [*FRAGMENTS, *(fragment.swapcase() for fragment in FRAGMENTS)])
def test_each_fragment_alone_is_scrubbed_as_the_full_scans_do(no_known_secrets: None, text: str) -> None:
    assert sentry.scrub_event({"message": text})["message"] == sentry._scrub_patterns(text)


@given(text=TEXT)
@example(text="    @app.get('/items')")
def test_the_shortcut_scrubs_exactly_as_the_full_scans_do(no_known_secrets: None, text: str) -> None:
    assert sentry.scrub_event({"message": text})["message"] == sentry._scrub_patterns(text)
