"""Account use cases: register, sign in, who am I."""

from __future__ import annotations

from dataclasses import dataclass

from market.domain.errors import InvalidCredentials, NotFound, ServerBusy
from market.domain.events import UserRegistered
from market.domain.users import Role, User, normalise_email, validate_registration

from .ports import (
    AccessToken,
    Clock,
    EventPublisher,
    IdGenerator,
    PasswordHasher,
    ReadRepositories,
    SignInThrottle,
    TokenService,
    UnitOfWorkFactory,
)

# Verified against when the e-mail is unknown, so that a miss costs as much as a wrong password and response
# times do not reveal which addresses have accounts.
_DUMMY_PASSWORD = "not-a-real-password-just-equalising-time"


@dataclass(frozen=True, slots=True)
class Register:
    email: str
    password: str
    display_name: str
    role: str


async def register_user(
    cmd: Register,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    ids: IdGenerator,
    clock: Clock,
    events: EventPublisher,
    allow_admin: bool = False,
) -> User:
    """Create an account. Raises ValidationFailed or EmailAlreadyRegistered."""
    validate_registration(cmd.email, cmd.password, cmd.display_name, cmd.role, allow_admin=allow_admin)
    user = User(
        id=ids.new_id(),
        email=normalise_email(cmd.email),
        display_name=cmd.display_name.strip(),
        role=Role(cmd.role),
        password_hash=await hasher.hash(cmd.password),
        created_at=clock.now(),
    )
    async with uow() as work:
        await work.users.add(user)
        await work.commit()
    events.publish([UserRegistered(user.id, user.role)])
    return user


async def issue_token(
    email: str,
    password: str,
    *,
    repos: ReadRepositories,
    hasher: PasswordHasher,
    tokens: TokenService,
    dummy_hash: str,
    throttle: SignInThrottle | None = None,
) -> AccessToken:
    """Exchange credentials for a bearer token. Unknown e-mail and wrong password fail the same way, and
    count alike against the account's attempts (so the limit does not reveal which addresses exist).
    Raises InvalidCredentials, or RateLimited when the account has had too many failed attempts."""
    account = normalise_email(email)
    if throttle is not None:
        # Counted before the password is checked, so that concurrent guesses cannot all slip under the limit.
        await throttle.attempt(account)
    try:
        user = await repos.users.get_by_email(account)
        if user is None:
            await hasher.verify(dummy_hash, _DUMMY_PASSWORD)
            raise InvalidCredentials()
        if not await hasher.verify(user.password_hash, password):
            raise InvalidCredentials()
    except ServerBusy:
        # Not a failed guess: a flood that keeps the hasher busy must not lock its victims' accounts.
        if throttle is not None:
            await throttle.undecided(account)
        raise
    if throttle is not None:
        await throttle.succeeded(account)
    return tokens.issue(user)


async def current_user(user_id: str, *, repos: ReadRepositories) -> User:
    user = await repos.users.get(user_id)
    if user is None:
        raise NotFound("This account no longer exists.")
    return user
