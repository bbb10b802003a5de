"""Account use cases: register, sign in, who am I; change a password, sign out everywhere; and the operators'
own: set a password, disable and enable an account, list accounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from market.domain.errors import InvalidCredentials, NotFound, ServerBusy, TokenRevoked, WrongPassword
from market.domain.events import UserRegistered
from market.domain.users import (
    Role,
    User,
    UserStatus,
    normalise_email,
    normalise_password,
    validate_new_password,
    validate_registration,
)

from .ports import (
    AccessToken,
    Clock,
    IdGenerator,
    PasswordHasher,
    ReadRepositories,
    SignInThrottle,
    TokenService,
    UnitOfWork,
    UnitOfWorkFactory,
)


@dataclass(frozen=True, slots=True)
class Register:
    email: str
    password: str = field(repr=False)
    display_name: str
    role: str


async def register_user(
    cmd: Register,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    ids: IdGenerator,
    clock: Clock,
    allow_admin: bool = False,
) -> User:
    """Create an account. Raises ValidationFailed or EmailAlreadyRegistered."""
    validate_registration(cmd.email, cmd.password, cmd.display_name, cmd.role, allow_admin=allow_admin)
    user = User(
        id=ids.new_id(),
        email=normalise_email(cmd.email),
        display_name=cmd.display_name.strip(),
        role=Role(cmd.role),
        password_hash=await hasher.hash(normalise_password(cmd.password)),
        created_at=clock.now(),
    )
    async with uow() as work:
        await work.users.add(user)
        await work.collect([UserRegistered(user.id, user.role)], user.created_at)
        await work.commit()
    return user


async def issue_token(
    email: str,
    password: str,
    *,
    repos: ReadRepositories,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenService,
    clock: Clock,
    dummy_hash: str,
    throttle: SignInThrottle | None = None,
) -> AccessToken:
    """Exchange credentials for a bearer token and record the sign-in. Unknown e-mail, wrong password and a
    disabled account fail the same way, after the same work, and count alike against the account's attempts (so
    the limit does not reveal which addresses exist). Raises InvalidCredentials, or RateLimited when the account
    has had too many failed attempts."""
    account = normalise_email(email)
    if throttle is not None:
        # Counted before the password is checked, so that concurrent guesses cannot all slip under the limit.
        await throttle.attempt(account)
    try:
        user = await repos.users.get_by_email(account)
        if user is None:
            # Verified when the e-mail is unknown, so that a miss costs as much as a wrong password and response
            # times do not reveal which addresses have accounts: the password typed, so as many hashes, too.
            await _password_matches(hasher, dummy_hash, password)
            raise InvalidCredentials()
        if (
            not await _password_matches(hasher, user.password_hash, password)
            or user.status is not UserStatus.ACTIVE
        ):
            raise InvalidCredentials()
    except ServerBusy:
        # Not a failed guess: a flood that keeps the hasher busy must not lock its victims' accounts.
        if throttle is not None:
            await throttle.undecided(account)
        raise
    if throttle is not None:
        await throttle.succeeded(account)
    async with uow() as work:
        await work.users.record_login(user.id, clock.now())
        await work.commit()
    # Issued with the version read before the password check: a revocation that lands meanwhile revokes
    # this token too.
    return tokens.issue(user)


async def _password_matches(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made from. Hashes are made from the NFC form
    (`normalise_password`); those made before passwords were normalised hold the form as typed then, so a
    password that NFC changes is also tried as typed (one attempt against the limits, two hashes)."""
    typed = normalise_password(password)
    if await hasher.verify(password_hash, typed):
        return True
    return typed != password and await hasher.verify(password_hash, password)


async def user_of_token(token: str, *, tokens: TokenService, repos: ReadRepositories) -> User | None:
    """The user an access token was issued to, or None when the token is forged, malformed, expired or revoked,
    or its user is gone or disabled. Revocation costs no extra query: the user row carries the token version."""
    claims = tokens.read(token)
    if claims is None:
        return None
    user = await repos.users.get(claims.user_id)
    if user is None or not user.accepts_token(claims.token_version):
        return None
    return user


async def current_user(user_id: str, *, repos: ReadRepositories) -> User:
    user = await repos.users.get(user_id)
    if user is None:
        raise NotFound("This account no longer exists.")
    return user


async def change_password(
    user: User,
    current_password: str,
    new_password: str,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    throttle: SignInThrottle | None = None,
) -> None:
    """Replace the signed-in user's password and revoke every token issued so far. `user` is as read when the
    request's token was accepted. The current password is checked as a sign-in checks it, against the same
    per-account attempts: whoever holds a token must not guess the password here without limit. Raises
    ValidationFailed (naming `new_password`; also when it is the current password), WrongPassword, RateLimited when the account has had too many
    failed attempts, or TokenRevoked when that token was revoked meanwhile (of concurrent changes, only the
    first happens)."""
    # Compared with what was typed as the current password, before that is checked: it tells nothing about
    # whether it is right, and costs no hash and no attempt.
    validate_new_password(new_password, field="new_password", current=current_password)
    account = normalise_email(user.email)
    if throttle is not None:
        await throttle.attempt(account)
    try:
        right = await _password_matches(hasher, user.password_hash, current_password)
    except ServerBusy:
        if throttle is not None:
            await throttle.undecided(account)
        raise
    if not right:
        raise WrongPassword()
    if throttle is not None:
        await throttle.succeeded(account)
    # Outside the transaction: hashing is slow on purpose.
    password_hash = await hasher.hash(normalise_password(new_password))
    async with uow() as work:
        # Written only if the token version is still the one read with the hash just verified: every password
        # change bumps it, so an unchanged version means that hash is still the user's and the token still live.
        if not await work.users.replace_password(user.id, password_hash, token_version=user.token_version):
            raise TokenRevoked()
        await work.commit()


async def sign_out_everywhere(user: User, *, uow: UnitOfWorkFactory) -> None:
    """Revoke every token issued to the user so far, on every device. `user` is as read when the request's
    token was accepted; TokenRevoked when that token was revoked meanwhile (nothing more is revoked: a dead
    token must not end sessions begun since)."""
    async with uow() as work:
        if not await work.users.revoke_tokens(user.id, token_version=user.token_version):
            raise TokenRevoked()
        await work.commit()


async def set_password(
    email: str, new_password: str, *, uow: UnitOfWorkFactory, hasher: PasswordHasher
) -> User:
    """An operator sets a user's password; every token issued so far is revoked. Raises ValidationFailed or
    NotFound."""
    validate_new_password(new_password)
    password_hash = await hasher.hash(normalise_password(new_password))
    async with uow() as work:
        user = await _account(work, email)
        await work.users.replace_password(user.id, password_hash)
        await work.commit()
    return user


async def disable_user(email: str, *, uow: UnitOfWorkFactory) -> User:
    """An operator disables an account: its tokens stop working at once and it cannot sign in. Raises
    NotFound."""
    async with uow() as work:
        user = await _account(work, email)
        await work.users.set_status(user.id, UserStatus.DISABLED)
        # Revoked too, so that enabling the account later does not bring its old tokens back.
        await work.users.revoke_tokens(user.id)
        await work.commit()
    return user


async def enable_user(email: str, *, uow: UnitOfWorkFactory) -> User:
    """An operator enables an account again; it signs in afresh (its old tokens stay revoked). Raises
    NotFound."""
    async with uow() as work:
        user = await _account(work, email)
        await work.users.set_status(user.id, UserStatus.ACTIVE)
        await work.commit()
    return user


async def list_users(*, repos: ReadRepositories) -> Sequence[User]:
    """Every account, oldest first."""
    return await repos.users.list_all()


async def _account(work: UnitOfWork, email: str) -> User:
    user = await work.users.get_by_email(normalise_email(email))
    if user is None:
        raise NotFound("No account has this e-mail address.")
    return user


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

RegisterUser = Callable[[Register], Awaitable[User]]
IssueToken = Callable[[str, str], Awaitable[AccessToken]]
"""(email, password)"""
UserOfToken = Callable[[str], Awaitable[User | None]]
ChangePassword = Callable[[User, str, str], Awaitable[None]]
"""(user, current password, new password)"""
SignOutEverywhere = Callable[[User], Awaitable[None]]
"""(the signed-in user)"""
