"""What the `market` command's modules share (market.cli and the command groups registered on it): the
settings read once with a one-line error, and a database opened for one command. Here rather than in
market.cli, which nothing imports."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from market.config import ConfigError, Settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    """The settings, or one line on stderr and exit status 2."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        click.echo(f"market: {exc}", err=True)
        sys.exit(2)


def with_database(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(database)` on a started `Database`; a database that cannot be used (unreachable, or a file
    that is no sound SQLite database: `unusable_database`) is one line on stderr and exit status 1. Logs go to
    stderr (as JSON lines, as the server's): a command's stdout is its result alone (`--json | jq`)."""
    from market.adapters.db.database import Database
    from market.bootstrap import configure_logging

    configure_logging(settings, "ext://sys.stderr")

    async def run() -> T:
        database = Database(settings.database)
        await database.start()
        try:
            return await work(database)
        finally:
            await database.close()

    from market.adapters.db.errors import unusable_database

    try:
        return asyncio.run(run())
    except Exception as exc:
        problem = unusable_database(exc, settings.database.url.redacted())
        if problem is None:
            raise
        click.echo(f"market: {problem}", err=True)
        sys.exit(1)
