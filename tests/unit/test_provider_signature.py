"""Our `Market-Signature` scheme is Stripe's `Stripe-Signature`: cross-checked both ways with the official
`stripe` package, so one verifier serves our sandbox and Stripe."""

from __future__ import annotations

import time

import pytest
import stripe

from market.adapters.payments.signature import TOLERANCE_S, InvalidSignature, sign, verify

SECRET = "whsec_5f8a2c1e9b7d4f3a6e0c1b2d3f4a5e6c"
BODY = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"payment.succeeded","data":{"order_id":"o-1"}}'
TAMPERED = BODY.replace(b"o-1", b"o-2")


def stripe_header(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp)


def stripe_verifies(body: bytes, header: str, secret: str = SECRET) -> bool:
    """What Stripe's SDK (`stripe.Webhook.construct_event`) checks, with its default 300 s tolerance."""
    try:
        return stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError:
        return False


def we_verify(body: bytes, header: str, secret: str = SECRET) -> bool:
    try:
        verify(secret, body, header)
    except InvalidSignature:
        return False
    return True


def test_our_header_is_byte_for_byte_the_one_stripe_computes() -> None:
    assert sign(SECRET, BODY, timestamp=1_764_000_000) == stripe_header(BODY, timestamp=1_764_000_000)


def test_a_header_we_sign_verifies_with_stripes_sdk() -> None:
    assert stripe_verifies(BODY, sign(SECRET, BODY))


def test_a_header_stripe_signs_verifies_with_ours() -> None:
    assert we_verify(BODY, stripe_header(BODY))


def test_a_tampered_body_fails_both_ways() -> None:
    assert not stripe_verifies(TAMPERED, sign(SECRET, BODY))
    assert not we_verify(TAMPERED, stripe_header(BODY))


def test_another_secret_fails_both_ways() -> None:
    assert not stripe_verifies(BODY, sign("whsec_other", BODY))
    assert not we_verify(BODY, stripe_header(BODY, secret="whsec_other"))


def test_a_timestamp_inside_the_tolerance_verifies_both_ways() -> None:
    recent = int(time.time()) - TOLERANCE_S + 10
    assert stripe_verifies(BODY, sign(SECRET, BODY, timestamp=recent))
    assert we_verify(BODY, stripe_header(BODY, timestamp=recent))


def test_a_stale_timestamp_fails_both_ways() -> None:
    stale = int(time.time()) - (TOLERANCE_S + 1)
    assert not stripe_verifies(BODY, sign(SECRET, BODY, timestamp=stale))
    assert not we_verify(BODY, stripe_header(BODY, timestamp=stale))


def test_we_refuse_a_future_timestamp_stripe_signed() -> None:
    future = int(time.time()) + TOLERANCE_S + 1
    assert not we_verify(BODY, stripe_header(BODY, timestamp=future))


def test_stripes_sdk_accepts_future_timestamps_so_only_our_verifier_refuses_them() -> None:
    """Stripe's SDK checks staleness only (`timestamp < now - tolerance`). We are stricter; if the SDK ever
    starts refusing future timestamps this test says so, and the two schemes agree fully."""
    future = int(time.time()) + TOLERANCE_S + 1
    header = sign(SECRET, BODY, timestamp=future)
    assert stripe_verifies(BODY, header)
    assert not we_verify(BODY, header)


def test_a_header_with_several_v1_signatures_verifies_when_one_matches() -> None:
    """Stripe sends one v1 signature per active secret while a secret is being rolled."""
    t = int(time.time())
    ours = sign(SECRET, BODY, timestamp=t).split(",")[1]
    header = f"t={t},v1={'0' * 64},{ours},v1={'f' * 64},v0={'a' * 64}"
    assert we_verify(BODY, header)
    assert stripe_verifies(BODY, header)


@pytest.mark.parametrize("header", ["", "v1=abc", f"t=notanumber,v1={'0' * 64}", f"t={int(time.time())}"])
def test_a_malformed_header_fails_both_ways(header: str) -> None:
    assert not we_verify(BODY, header)
    assert not stripe_verifies(BODY, header)


@pytest.mark.parametrize(
    ("make_header", "body", "reason"),
    [
        # Built when the test runs, not at collection: a run can start minutes after collection, and a
        # signature made then would be stale by the time it is checked.
        (lambda now: None, BODY, "missing_signature"),
        (lambda now: "", BODY, "missing_signature"),
        (lambda now: "t=abc,v1=00", BODY, "malformed"),
        (lambda now: "v1=00", BODY, "malformed"),
        (lambda now: f"t={now}", BODY, "malformed"),
        (lambda now: sign(SECRET, BODY, timestamp=now - TOLERANCE_S - 60), BODY, "stale_signature"),
        (lambda now: sign(SECRET, BODY, timestamp=now + TOLERANCE_S + 60), BODY, "stale_signature"),
        (lambda now: sign("whsec_other", BODY, timestamp=now), BODY, "bad_signature"),
        (lambda now: sign(SECRET, BODY, timestamp=now), TAMPERED, "bad_signature"),
    ],
    ids=["absent", "empty", "bad-t", "no-t", "no-v1", "stale", "future", "other-secret", "tampered"],
)
def test_each_failed_verification_names_its_bounded_reason(make_header, body, reason) -> None:
    with pytest.raises(InvalidSignature) as failed:
        verify(SECRET, body, make_header(int(time.time())))
    assert failed.value.reason == reason


@pytest.mark.parametrize(
    "header",
    [
        f"t={'9' * 400},v1={'0' * 64}",  # once an OverflowError: too large to subtract from a float
        f"t=-{'9' * 400},v1={'0' * 64}",
        f"t={int(time.time())},v1=é",  # once a TypeError from compare_digest (non-ASCII str)
        f"t={int(time.time())},v1={'é' * 64}",
        f"t=١٧٦٤٠٠٠٠٠٠,v1={'0' * 64}",  # Arabic-Indic digits: int() reads them, no header has them
        f"t=1_764_000_000,v1={'0' * 64}",
        f"t= {int(time.time())},v1={'0' * 64}",
        "t=\x00,v1=\x00",
        "," * 10_000,
    ],
)
def test_a_hostile_header_is_invalid_signature_and_nothing_else(header: str) -> None:
    with pytest.raises(InvalidSignature):
        verify(SECRET, BODY, header)


def test_a_correct_signature_with_a_non_hex_candidate_beside_it_still_verifies() -> None:
    t = int(time.time())
    ours = sign(SECRET, BODY, timestamp=t).split(",")[1]
    assert we_verify(BODY, f"t={t},v1=ünïcode,{ours}")


def test_a_header_with_two_timestamps_is_malformed_whichever_one_is_signed() -> None:
    """Which `t` was signed is ambiguous: neither is taken (the MAC still binds one, so this forges nothing)."""
    now = int(time.time())
    signed = sign(SECRET, BODY, timestamp=now)  # t=<now>,v1=<mac>
    for header in (f"t=1,{signed}", f"{signed},t=1", f"t={now},{signed}"):
        with pytest.raises(InvalidSignature) as refused:
            verify(SECRET, BODY, header)
        assert refused.value.reason == "malformed"
