"""The backup section of the settings: MARKET_BACKUP_DIR, MARKET_BACKUP_RETENTION_DAYS, MARKET_BACKUP_SCHEDULE,
MARKET_BACKUP_LOCK_TIMEOUT."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from market.config import ConfigError, Settings


def _backup(**environ: str):
    return Settings.from_env(environ, dotenv=None).backup


def test_defaults_keep_30_days_in_var_backups_without_in_process_schedule():
    settings = _backup()
    assert (settings.directory, settings.retention_days, settings.schedule) == (Path("var/backups"), 30, None)


def test_a_restore_waits_30_s_behind_a_lock_unless_told_otherwise():
    assert _backup().lock_timeout_s == 30
    assert _backup(MARKET_BACKUP_LOCK_TIMEOUT="2m").lock_timeout_s == 120


def test_values_are_read():
    settings = _backup(
        MARKET_BACKUP_DIR="/srv/backups", MARKET_BACKUP_RETENTION_DAYS="7", MARKET_BACKUP_SCHEDULE="3:05"
    )
    assert (settings.directory, settings.retention_days, settings.schedule) == (
        Path("/srv/backups"),
        7,
        time(3, 5),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKET_BACKUP_SCHEDULE", "24:00"),
        ("MARKET_BACKUP_SCHEDULE", "3am"),
        ("MARKET_BACKUP_SCHEDULE", "03:00:00"),
        ("MARKET_BACKUP_RETENTION_DAYS", "0"),
        ("MARKET_BACKUP_RETENTION_DAYS", "a month"),
        ("MARKET_BACKUP_LOCK_TIMEOUT", "0"),
        ("MARKET_BACKUP_LOCK_TIMEOUT", "soon"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str):
    with pytest.raises(ConfigError) as caught:
        _backup(**{variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message
