"""Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets are `whsec_<base64>`, and each
message carries `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 of
HMAC-SHA256(base64-decoded secret, "<id>.<timestamp>.<body>")>`. Receivers verify with any Standard Webhooks
library (`standardwebhooks.Webhook(secret).verify(body, headers)`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64 random bytes


class InvalidSecret(ValueError):
    """A stored secret that is not `whsec_<base64>`."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_`."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("the webhook secret is not whsec_<base64>") from None
    if not key:
        raise InvalidSecret("the webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 signature>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
