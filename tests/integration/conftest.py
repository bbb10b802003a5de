"""Fixtures of the backup tests: `market backup` and the engine, on a fresh database of each engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.config import DatabaseURL
from tests.support.backups import Market


@pytest.fixture
def market(database_url: str, tmp_path: Path) -> Market:
    """`market backup` on a fresh database of each engine (not yet migrated)."""
    return Market(database_url, tmp_path / "backups")


@pytest.fixture
def engine(database_url: str) -> str:
    """The engine of this run of the test: `sqlite` or `postgresql`."""
    return DatabaseURL.parse(database_url).engine
