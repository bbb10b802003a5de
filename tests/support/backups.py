"""Helpers shared by the backup integration tests (their fixtures are in tests/integration/conftest.py).

Everything runs against real databases: a fresh PostgreSQL database or SQLite file per test, seeded with
the demo data, and the real `market backup` commands (in-process through click's runner)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import tarfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import asyncpg
from click.testing import CliRunner, Result

from market.adapters.db.database import Database
from market.adapters.db.repositories import PiccoloUnitOfWork, PiccoloUserRepository
from market.adapters.db.seed import seed_demo_data
from market.adapters.security.tokens import JwtTokenService
from market.application.accounts import sign_out_everywhere, user_of_token
from market.cli import main
from market.config import DatabaseURL
from tests.support.database import open_database
from tests.support.postgres import POSTGRES_ADMIN_URL, admin_execute, postgres_url

SELLERS, ITEMS = 5, 2000
PASSWORD_HASH = "$argon2id$not-a-real-hash"
TOKENS = JwtTokenService("backup-tests-signing-key-" + "k" * 16, ttl_seconds=3600)
T = TypeVar("T")


def seed(url: str, *, sellers: int = SELLERS, items: int = ITEMS) -> None:
    """Migrate, then insert demo sellers and items."""

    async def work() -> None:
        database = open_database(url)
        await database.start()
        try:
            await database.migrate()
            if items or sellers:
                await seed_demo_data(database, sellers=sellers, items=items, password_hash=PASSWORD_HASH)
        finally:
            await database.close()

    asyncio.run(work())


def migrate(url: str) -> None:
    """The schema only: an 'empty' database for restore."""
    seed(url, sellers=0, items=0)


def _on(url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        database = open_database(url)
        await database.start()
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(run())


def user_ids(url: str) -> list[str]:
    async def ids(db: Database) -> list[str]:
        return [user.id for user in await PiccoloUserRepository(db).list_all()]

    return _on(url, ids)


def sign_in(url: str, user_id: str) -> str:
    """An access token for the user as they are now (what signing in gives)."""

    async def issue(db: Database) -> str:
        user = await PiccoloUserRepository(db).get(user_id)
        assert user is not None
        return TOKENS.issue(user).token

    return _on(url, issue)


def accepted(url: str, token: str) -> bool:
    """Whether a request with this token would be signed in (the API's check)."""

    async def check(db: Database) -> bool:
        repos = SimpleNamespace(users=PiccoloUserRepository(db))
        return await user_of_token(token, tokens=TOKENS, repos=repos) is not None  # type: ignore[arg-type]

    return _on(url, check)


def sign_out_everywhere_as(url: str, user_id: str) -> None:
    """`POST /auth/logout`'s use case: every token of the user issued so far is revoked."""

    async def sign_out(db: Database) -> None:
        user = await PiccoloUserRepository(db).get(user_id)
        assert user is not None
        await sign_out_everywhere(user, uow=lambda: PiccoloUnitOfWork(db))

    _on(url, sign_out)


def change_password_of(url: str, user_id: str) -> None:
    """What a password change writes (`POST /me/password`): a new hash, every token issued so far revoked."""

    async def change(db: Database) -> None:
        user = await PiccoloUserRepository(db).get(user_id)
        assert user is not None
        async with PiccoloUnitOfWork(db) as work:
            assert await work.users.replace_password(
                user.id, "$argon2id$new", token_version=user.token_version
            )
            await work.commit()

    _on(url, change)


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Every table: (rows, a checksum of its whole content, independent of row order)."""
    parsed = DatabaseURL.parse(url)
    if parsed.engine == "sqlite":
        with closing(sqlite3.connect(parsed.path)) as db:
            names = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            result = {}
            for name in names:
                rows = sorted(repr(row) for row in db.execute(f'SELECT * FROM "{name}"'))
                result[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
            return result

    async def work() -> dict[str, tuple[int, str]]:
        conn = await asyncpg.connect(parsed.dsn)
        try:
            names = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
            result = {}
            for (name,) in names:
                row = await conn.fetchrow(
                    f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                    f' AS digest FROM "{name}" t'
                )
                result[name] = (row["n"], row["digest"])
            return result
        finally:
            await conn.close()

    return asyncio.run(work())


def business_fingerprint(url: str) -> dict[str, tuple[int, str]]:
    return {name: value for name, value in fingerprint(url).items() if name != "market_migrations"}


def postgres_sql(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def work() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(DatabaseURL.parse(url).dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(work())


def scratch_databases() -> set[str]:
    """Databases `verify` creates; it must always drop them again."""
    rows = postgres_sql(
        POSTGRES_ADMIN_URL, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_verify\\_%'"
    )
    return {row["datname"] for row in rows}


def wipe(url: str) -> None:
    """Lose everything: the SQLite file, or the PostgreSQL database (recreated empty, as after a disaster)."""
    parsed = DatabaseURL.parse(url)
    if parsed.engine == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.path}{suffix}").unlink(missing_ok=True)
        return
    admin_execute(f'DROP DATABASE "{parsed.name}" WITH (FORCE)')
    admin_execute(f'CREATE DATABASE "{parsed.name}"')


@dataclass
class Market:
    """`market backup …` against one database and one backup directory."""

    url: str
    directory: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        environ = {"MARKET_DATABASE_URL": self.url, "MARKET_BACKUP_DIR": str(self.directory), **(env or {})}
        return CliRunner().invoke(main, ["backup", *args], env=environ, input=input)

    def ok(self, *args: str, **kwargs: object) -> Result:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.exit_code == 0, f"market backup {' '.join(args)}: {result.output}"
        return result

    def archives(self) -> list[Path]:
        return sorted(self.directory.glob("market-*.tar.gz"))

    def create(self) -> Path:
        before = set(self.archives())
        self.ok("create")
        (new,) = set(self.archives()) - before
        return new


def one_line_failure(result: Result) -> str:
    """A refused command: non-zero exit, one line on stderr, no traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("market: ") and "Traceback" not in result.output
    return lines[0]


def other_postgres_url() -> Iterator[str]:
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def archive_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def pack_archive(path: Path, members: dict[str, bytes]) -> None:
    """An archive as a forger would make it: any members, in the order given, no checks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def with_manifest_edited(good: Path, path: Path, edit: Callable[[dict], None]) -> None:
    """A copy of `good` at `path` whose manifest `edit` changed; payload and checksums untouched."""
    members = archive_members(good)
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    pack_archive(path, members)
