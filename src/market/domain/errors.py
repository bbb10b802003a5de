"""Every error the business can raise. Each carries a human `detail`; the HTTP layer maps each kind to one
stable problem type (adapters/http/problems.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field, named as the client spelled it."""

    field: str
    message: str


class DomainError(Exception):
    """Root of all domain errors. `detail` is a sentence a user can read."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    """Input broke a business rule; one `FieldError` per offending field."""

    def __init__(self, errors: list[FieldError], detail: str = "Some fields are not valid.") -> None:
        super().__init__(detail)
        self.errors = errors


class NotFound(DomainError):
    """The object does not exist, or the caller may not know that it does."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this to this object."""


class EmailAlreadyRegistered(DomainError):
    """An account with this e-mail address exists already."""

    def __init__(self) -> None:
        super().__init__("An account with this e-mail address already exists.")


class InvalidCredentials(DomainError):
    """Unknown e-mail or wrong password; deliberately indistinguishable."""

    def __init__(self) -> None:
        super().__init__("The e-mail address or password is not correct.")


class WrongPassword(DomainError):
    """A signed-in user's current password, asked again before changing it, is not correct."""

    def __init__(self) -> None:
        super().__init__("The current password is not correct.")


class TokenRevoked(DomainError):
    """The token a request was made with was revoked while the request ran (a password change, a sign-out or a
    disabling got there first): answered as any dead token is."""

    def __init__(self) -> None:
        super().__init__(DEAD_TOKEN)


DEAD_TOKEN = "The token is not valid or has expired; sign in again."
"""What a request with a forged, malformed, expired or revoked token is told (no more than that)."""


class CurrencyMismatch(DomainError):
    """Amounts in different currencies were combined."""


class InvalidCursor(DomainError):
    """A pagination cursor that this service did not issue, or issued for another query."""

    def __init__(self) -> None:
        super().__init__("The cursor is not valid for this list; start again without it.")


class IdempotencyKeyRequired(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "Send an Idempotency-Key header (up to 255 characters) so a retry cannot charge twice."
        )


class IdempotencyKeyReused(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request body; use a new key."
        )


class IdempotentRequestInProgress(DomainError):
    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed; retry in a moment.")


class InvalidProviderEvent(DomainError):
    """A payment provider event that is unsigned, badly signed, stale, or not one we understand."""


class WebhookUrlNotAllowed(ValidationFailed):
    """A webhook URL that leads to an address the service refuses to call (loopback, private, link-local,
    unique-local, multicast, unspecified, cloud metadata) or to no address at all: the guard against server-side
    request forgery. The reason is the same whatever the cause, so it reveals nothing about internal names."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            [FieldError("url", reason)],
            "Webhook URLs must lead to a public internet address; this one does not.",
        )


class RateLimited(DomainError):
    """Too many attempts from one client or at one account; `retry_after_s` says when to try again."""

    def __init__(self, retry_after_s: int, detail: str = "Too many requests; try again later.") -> None:
        super().__init__(f"{detail} Retry in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


class ServerBusy(DomainError):
    """A bounded resource (e.g. password hashing) had no free slot within a short wait."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("The service is busy; try again in a moment.")
        self.retry_after_s = retry_after_s
