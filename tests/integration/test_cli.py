"""The `market` command, run as operators run it: `python -m market ...` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from market.adapters.db.migrations import MIGRATIONS
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloReadRepositories, PiccoloUnitOfWork
from market.adapters.security.passwords import Argon2PasswordHasher
from market.adapters.security.tokens import JwtTokenService, load_or_create_secret_key
from market.application.accounts import issue_token
from market.bootstrap import SystemClock
from market.domain.catalog import ItemFilter
from market.domain.errors import InvalidCredentials
from market.domain.users import Role
from tests.support.database import open_database
from tests.support.postgres import admin_execute, postgres_url

ADMIN_PASSWORD = "correct horse battery staple"


class Workspace:
    """A working directory with its own SQLite database and var folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_path = root / "data" / "market.db"
        self.var_dir = root / "var"
        self.database_url = f"sqlite:///{self.db_path}"

    def run(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MARKET_", "OTEL_", "SENTRY_"))
        }
        environ.update(
            {
                "MARKET_DATABASE_URL": self.database_url,
                "MARKET_VAR_DIR": str(self.var_dir),
                "OTEL_SDK_DISABLED": "true",
            }
        )
        environ.update(env)
        return subprocess.run(
            [sys.executable, "-m", "market", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=environ,
            cwd=self.root,
            timeout=60,
        )

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def _is_log_line(line: str) -> bool:
    try:
        return "logger" in json.loads(line)
    except ValueError:
        return False


def _assert_one_clean_error_line(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    """One line for people on stderr (beside the JSON log lines a command writes there), no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if not _is_log_line(line)]
    assert len(lines) == 1, result.stderr
    for mention in mentions:
        assert mention in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_db_migrate_applies_the_schema_once_and_then_reports_it_is_up_to_date(workspace):
    first = workspace.run("db", "migrate")
    assert first.returncode == 0, first.stderr
    assert _last_line(first.stdout) == "applied: " + ", ".join(m.version for m in MIGRATIONS)

    second = workspace.run("db", "migrate")
    assert second.returncode == 0, second.stderr
    assert _last_line(second.stdout) == "schema is up to date"
    assert workspace.query("SELECT version FROM market_migrations ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]


async def test_create_admin_takes_the_password_from_stdin_and_the_admin_can_get_a_token(workspace):
    result = await asyncio.to_thread(
        workspace.run, "users", "create-admin", "--email", "A@B.co", stdin=ADMIN_PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert _last_line(result.stdout).startswith("created admin a@b.co (")

    database = open_database(workspace.database_url)
    await database.start()
    try:
        repos = PiccoloReadRepositories(database)
        admin = await repos.users.get_by_email("a@b.co")
        assert admin is not None and admin.role is Role.ADMIN
        assert admin.password_hash != ADMIN_PASSWORD

        hasher = Argon2PasswordHasher()
        tokens = JwtTokenService(load_or_create_secret_key(workspace.var_dir), ttl_seconds=600)
        sign_in = {
            "repos": repos,
            "uow": lambda: PiccoloUnitOfWork(database),
            "hasher": hasher,
            "tokens": tokens,
            "clock": SystemClock(),
            "dummy_hash": admin.password_hash,
        }
        token = await issue_token("a@b.co", ADMIN_PASSWORD, **sign_in)
        claims = tokens.read(token.token)
        assert claims is not None and claims.user_id == admin.id
        with pytest.raises(InvalidCredentials):
            await issue_token("a@b.co", ADMIN_PASSWORD + "x", **sign_in)
    finally:
        await database.close()


def test_commands_print_only_their_result_on_stdout_and_log_to_stderr(workspace):
    runs = {
        "db migrate": workspace.run("db", "migrate"),
        "create-admin": workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD),
        "set-password": workspace.run(
            "users", "set-password", "--email", "a@b.co", stdin=ADMIN_PASSWORD + "!"
        ),
        "disable": workspace.run("users", "disable", "--email", "a@b.co"),
        "enable": workspace.run("users", "enable", "--email", "a@b.co"),
        "reconcile": workspace.run("payments", "reconcile"),
        "prune": workspace.run("analytics", "prune"),
    }
    for command, result in runs.items():
        assert result.returncode == 0, (command, result.stderr)
        [line] = result.stdout.splitlines()
        assert not line.startswith("{"), (command, line)
        for logged in result.stderr.splitlines():
            assert json.loads(logged)["message"], (command, logged)
    assert runs["create-admin"].stdout.startswith("created admin a@b.co")
    assert runs["enable"].stdout == "enabled a@b.co\n"


def test_create_admin_refuses_a_short_password_in_one_line_and_creates_nobody(workspace):
    result = workspace.run("users", "create-admin", "--email", "a@b.co", stdin="short\n")
    _assert_one_clean_error_line(result, "password")
    assert workspace.query("SELECT count(*) FROM users") == [(0,)]


def test_create_admin_with_a_taken_email_fails_and_keeps_the_first_admin(workspace):
    assert workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD).returncode == 0
    again = workspace.run("users", "create-admin", "--email", "a@b.co", stdin="another password 123")
    _assert_one_clean_error_line(again, "already exists")
    assert workspace.query("SELECT count(*) FROM users") == [(1,)]


@pytest.fixture
def closed_postgres_url():
    """A PostgreSQL database closed to new connections (ALLOW_CONNECTIONS false: before maintenance or a
    restore), which refuses each with SQLSTATE 55000."""
    name = f"market_test_closed_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        yield postgres_url(name)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "command",
    [("db", "migrate"), ("users", "list"), ("payments", "reconcile"), ("report", "funnel")],
    ids=lambda c: " ".join(c),
)
def test_a_database_closed_to_connections_is_one_line_without_a_traceback(
    workspace, closed_postgres_url, command
):
    result = workspace.run(*command, MARKET_DATABASE_URL=closed_postgres_url)
    _assert_one_clean_error_line(result, "cannot reach the database", "not currently accepting connections")


@pytest.mark.parametrize(
    "command",
    [
        ("db", "migrate"),
        ("db", "seed", "--items", "1"),
        ("users", "create-admin", "--email", "a@b.co"),
        ("serve",),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_bad_database_url_is_one_line_naming_the_variable_without_a_traceback(workspace, command):
    result = workspace.run(
        *command, stdin=ADMIN_PASSWORD, MARKET_DATABASE_URL="mysql://root@localhost/market"
    )
    _assert_one_clean_error_line(result, "MARKET_DATABASE_URL")


def test_a_bad_port_is_one_line_naming_the_variable_without_a_traceback(workspace):
    _assert_one_clean_error_line(workspace.run("serve", MARKET_PORT="http"), "MARKET_PORT")


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}").geturl()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/market",
        postgres_url("market_test_no_such_database"),
        _as_user(postgres_url("postgres"), "no_such_role_for_market"),
    ],
    ids=["nothing listening", "no such database", "no such role"],
)
def test_an_unreachable_database_is_one_line_without_a_traceback(workspace, url):
    result = workspace.run("db", "migrate", MARKET_DATABASE_URL=url)
    _assert_one_clean_error_line(result, "cannot reach the database")


@pytest.mark.parametrize(
    "command",
    [
        ("db", "migrate"),
        ("db", "seed", "--items", "1"),
        ("users", "list"),
        ("users", "disable", "--email", "a@b.co"),
        ("payments", "reconcile"),
        ("report", "search"),
        ("sessions", "find"),
        ("analytics", "prune"),
        ("backup", "create"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_file_that_is_not_a_database_is_one_line_without_a_traceback(workspace, command):
    workspace.db_path.parent.mkdir(parents=True)
    workspace.db_path.write_bytes(bytes(range(256)) * 32)
    result = workspace.run(*command)
    _assert_one_clean_error_line(result, "file is not a database", str(workspace.db_path))
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "postgresql://nobody:s3cret@127.0.0.1:1/market",
            "cannot reach the database postgresql://nobody:***@",
        ),
        ("junk", "cannot use the database sqlite:///"),
    ],
    ids=["nothing listening", "not a database"],
)
def test_serve_on_a_database_it_cannot_use_fails_in_one_json_line_without_a_traceback(
    workspace, url, problem
):
    if url == "junk":
        workspace.db_path.parent.mkdir(parents=True)
        workspace.db_path.write_bytes(bytes(range(256)) * 32)
        url = workspace.database_url
    result = workspace.run("serve", "--port", "0", MARKET_DATABASE_URL=url)
    assert result.returncode == 3  # uvicorn's status for a failed start
    assert result.stderr == ""  # no Python warning (Piccolo's, in colour) beside the JSON lines
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    [error] = [line for line in lines if line["level"] == "ERROR" and line["logger"].startswith("market")]
    assert error["message"].startswith(problem)
    assert "s3cret" not in result.stdout
    assert "Traceback" not in result.stdout and all("exception" not in line for line in lines)
    assert max(len(line["message"]) for line in lines) < 300


def test_serve_on_a_sqlite_file_another_process_keeps_locked_fails_in_one_json_line(workspace):
    assert workspace.run("db", "migrate").returncode == 0
    holder = sqlite3.connect(workspace.db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = workspace.run("serve", "--port", "0")
    finally:
        holder.close()
    assert result.returncode == 3
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    [error] = [line for line in lines if line["level"] == "ERROR" and line["logger"].startswith("market")]
    assert error["message"] == (
        f"cannot use the database {workspace.database_url}: database is locked (another process is holding it)"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_with_workers_exits_with_the_failed_start_status_when_a_worker_cannot_start(workspace):
    """uvicorn's supervisor stops the other workers and exits 0 on its own: a process manager would read that as
    a clean stop and not restart the service."""
    result = workspace.run(
        "serve", "--port", "0", "--workers", "2", MARKET_DATABASE_URL="postgresql://nobody@127.0.0.1:1/market"
    )
    assert result.returncode == 3, result.stdout[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR" and line["logger"].startswith("market")]
    assert errors and all(e["message"].startswith("cannot reach the database") for e in errors)


async def test_db_seed_inserts_searchable_sellers_and_items(workspace):
    result = await asyncio.to_thread(workspace.run, "db", "seed", "--sellers", "2", "--items", "50")
    assert result.returncode == 0, result.stderr
    assert _last_line(result.stdout).startswith("seeded 2 sellers and 50 items")
    assert workspace.query("SELECT role, count(*) FROM users GROUP BY role") == [("seller", 2)]
    assert workspace.query("SELECT status, count(*) FROM items GROUP BY status") == [("active", 50)]
    orphans = "SELECT count(*) FROM items WHERE seller_id NOT IN (SELECT id FROM users)"
    assert workspace.query(orphans) == [(0,)]
    assert workspace.query("SELECT count(*) FROM items WHERE price_cents < 0 OR stock < 0") == [(0,)]

    database = open_database(workspace.database_url)
    await database.start()
    try:
        items = PiccoloItemRepository(database)
        browsed = await items.browse(ItemFilter(), 100, None)
        assert len(browsed.items) == 50
        every_description_says_made = await items.browse(ItemFilter(query="made"), 100, None)
        assert len(every_description_says_made.items) == 50
    finally:
        await database.close()


def test_db_seed_prints_sign_ins_that_work_with_the_demo_password(workspace):
    result = workspace.run("db", "seed", "--sellers", "12", "--items", "0", "--email-domain", "Shop.Example")
    assert result.returncode == 0, result.stderr
    printed = [line.strip() for line in result.stdout.splitlines() if line.startswith("  seller")]
    assert len(printed) == 10
    assert all(email.endswith("@shop.example") for email in printed)
    assert "demo-password-123" in result.stdout
    assert "and 2 more" in result.stdout
    stored = {row[0] for row in workspace.query("SELECT email FROM users WHERE role = 'seller'")}
    assert set(printed) <= stored and len(stored) == 12


@pytest.mark.parametrize("domain", ["nodot", "bad domain.com", "-x.com", "a..b"])
def test_db_seed_refuses_a_bad_email_domain(workspace, domain):
    result = workspace.run("db", "seed", "--sellers", "1", "--items", "0", "--email-domain", domain)
    assert result.returncode == 2
    assert "--email-domain" in result.stderr
    assert not workspace.db_path.exists()  # refused before touching any database


def test_db_seed_can_run_twice(workspace):
    for _ in range(2):
        assert workspace.run("db", "seed", "--sellers", "2", "--items", "5").returncode == 0
    assert workspace.query("SELECT count(*) FROM users") == [(4,)]
    assert workspace.query("SELECT count(*) FROM items") == [(10,)]


@pytest.mark.parametrize("command", [("disable",), ("enable",), ("set-password",)], ids=lambda c: c[0])
def test_account_commands_on_an_unknown_email_fail_in_one_line_and_change_nothing(workspace, command):
    assert workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD).returncode == 0
    before = workspace.query("SELECT password_hash, token_version, status FROM users")

    result = workspace.run("users", *command, "--email", "nobody@b.co", stdin="a new password 123\n")

    _assert_one_clean_error_line(result, "No account")
    assert workspace.query("SELECT password_hash, token_version, status FROM users") == before


def test_set_password_refuses_a_short_password_in_one_line_and_keeps_the_old_one(workspace):
    assert workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD).returncode == 0
    before = workspace.query("SELECT password_hash, token_version FROM users")

    result = workspace.run("users", "set-password", "--email", "a@b.co", stdin="short\n")

    _assert_one_clean_error_line(result, "password")
    assert workspace.query("SELECT password_hash, token_version FROM users") == before


def test_disable_and_enable_store_the_status_and_revoke_tokens_once(workspace):
    assert workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD).returncode == 0
    assert workspace.run("users", "disable", "--email", "A@b.co").returncode == 0
    assert workspace.query("SELECT status, token_version FROM users") == [("disabled", 1)]
    assert workspace.run("users", "enable", "--email", "a@b.co").returncode == 0
    assert workspace.query("SELECT status, token_version FROM users") == [("active", 1)]


def test_users_list_json_is_only_json_on_stdout_and_carries_no_secret(workspace):
    assert workspace.run("users", "create-admin", "--email", "a@b.co", stdin=ADMIN_PASSWORD).returncode == 0
    result = workspace.run("users", "list", "--json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert set(entry) == {"id", "email", "display_name", "role", "status", "created_at", "last_login_at"}
    assert (entry["email"], entry["role"], entry["status"], entry["last_login_at"]) == (
        "a@b.co",
        "admin",
        "active",
        None,
    )
    assert "argon2" not in result.stdout + result.stderr


# What anyone can store (a search, an e-mail at sign-up, a field of a client event) and an operator's terminal
# then shows: rich markup that would not parse, markup that would blink and link, and a raw ANSI escape.
HOSTILE = (
    "[/x]",
    "[reverse blink]FAKE[/reverse blink] [link=https://evil.example]click[/link]",
    "\x1b[31mred\x1b[0m :warning:",
)
SHOWN = ("[/x]", HOSTILE[1], "\\x1b[31mred\\x1b[0m :warning:")


async def _store_hostile_text(workspace: Workspace, session_id: str) -> None:
    from datetime import UTC, datetime

    from market.adapters.db.analytics import SqlAnalyticsLog
    from market.adapters.db.sessions import SqlSessionStore
    from market.domain.events import SearchPerformed
    from market.domain.sessions import ClientEvent
    from tests.support.database import add_user

    db = open_database(workspace.database_url)
    await db.start()
    try:
        await db.migrate()
        now = datetime.now(UTC)
        await add_user(db, email="[/x]@x.com")
        await add_user(db, email="\x1b[31m[bold]@x.com")
        await SqlAnalyticsLog(db, lambda: (session_id, None, None)).record(
            [SearchPerformed(text, 0) for text in HOSTILE], now
        )
        await SqlSessionStore(db).write(
            [],
            [
                ClientEvent(session_id, now, "note_shown", {"note": "[/bold] closing", "esc": HOSTILE[2]}),
            ],
        )
    finally:
        await db.close()


async def test_stored_text_is_printed_literally_never_as_markup_or_terminal_escapes(workspace):
    await _store_hostile_text(workspace, "shopper-1")
    outputs = {}
    for command in (
        ("report", "search"),
        ("users", "list"),
        ("sessions", "show", "shopper-1"),
        ("sessions", "find"),
    ):
        result = workspace.run(*command)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout + result.stderr
        outputs[" ".join(command[:2])] = result.stdout
    for shown in SHOWN:
        assert shown in outputs["report search"]
        assert shown in outputs["sessions show"]
    assert "[/bold] closing" in outputs["sessions show"]
    assert "[/x]@x.com" in outputs["users list"]
    assert "\\x1b[31m[bold]@x.com" in outputs["users list"]
    assert "shopper-1" in outputs["sessions find"]


async def test_json_output_keeps_stored_text_as_it_was_stored(workspace):
    await _store_hostile_text(workspace, "shopper-1")
    report = json.loads(workspace.run("report", "search", "--json").stdout)
    assert {entry["query"] for entry in report["top_queries"]} == set(HOSTILE)
    emails = {user["email"] for user in json.loads(workspace.run("users", "list", "--json").stdout)}
    assert {"[/x]@x.com", "\x1b[31m[bold]@x.com"} <= emails
    timeline = json.loads(workspace.run("sessions", "show", "shopper-1", "--json").stdout)
    assert any(entry.get("esc") == HOSTILE[2] for entry in timeline["timeline"])
