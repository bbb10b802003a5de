"""Settings from the environment and `.env`: parsed once, with one-line errors naming the variable."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from market import config
from market.config import DEFAULT_DATABASE_URL, ConfigError, DatabaseURL, Settings, read_dotenv


def _from_env(dotenv: Path | None = None, **environ: str) -> Settings:
    return Settings.from_env(environ, dotenv=dotenv)


def _assert_one_line_naming(error: ConfigError, variable: str) -> None:
    message = str(error)
    assert variable in message
    assert "\n" not in message and message.strip() == message


def test_without_any_variables_the_embedded_sqlite_default_is_used():
    settings = _from_env()
    assert settings.database.url == DatabaseURL.parse(DEFAULT_DATABASE_URL)
    assert settings.database.url.engine == "sqlite"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.public_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(("host", "url"), [("::", "http://[::]:8000"), ("::1", "http://[::1]:8000")])
def test_the_default_public_url_of_an_ipv6_bind_address_has_it_in_brackets(host, url):
    assert _from_env(MARKET_HOST=host).public_url == url


def test_variables_are_read_into_their_sections(tmp_path):
    settings = _from_env(
        MARKET_DATABASE_URL="postgresql://market@db.internal:6543/shop",
        MARKET_DATABASE_POOL_SIZE="3",
        MARKET_PORT="9001",
        MARKET_VAR_DIR=str(tmp_path),
        MARKET_PUBLIC_URL="https://shop.example.com/",
        MARKET_TOKEN_TTL_SECONDS="600",
        MARKET_TELEMETRY_CONSOLE="yes",
        MARKET_LOG_LEVEL="debug",
    )
    assert settings.database.url.engine == "postgresql"
    assert settings.database.pool_size == 3
    assert settings.server.port == 9001
    assert settings.var_dir == tmp_path
    assert settings.public_url == "https://shop.example.com"
    assert settings.auth.token_ttl_seconds == 600
    assert settings.telemetry.console is True
    assert settings.telemetry.log_level == "DEBUG"


@pytest.mark.parametrize(
    "url",
    [
        "market.db",
        "mysql://root@localhost/market",
        "sqlite://",
        "sqlite:///",
        "sqlite://relative.db",
        "postgresql://user@host:notaport/db",
        "postgresql://user@host:5432/",
        "postgresql://user@host:5432",
        "",
    ],
)
def test_a_bad_database_url_raises_a_one_line_config_error_naming_the_variable(url):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_DATABASE_URL=url)
    _assert_one_line_naming(raised.value, "MARKET_DATABASE_URL")


@pytest.mark.parametrize("port", ["eighty", "80.5", "-1", "65536", "1e3"])
def test_a_bad_port_raises_a_one_line_config_error_naming_the_variable(port):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_PORT=port)
    _assert_one_line_naming(raised.value, "MARKET_PORT")


def test_a_url_with_a_newline_in_it_still_gives_a_one_line_error():
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_DATABASE_URL="mysql://x/\ny")
    _assert_one_line_naming(raised.value, "MARKET_DATABASE_URL")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKET_DATABASE_POOL_SIZE", "0"),
        ("MARKET_TOKEN_TTL_SECONDS", "ten"),
        ("MARKET_TELEMETRY_CONSOLE", "maybe"),
        ("MARKET_LOG_LEVEL", "LOUD"),
    ],
)
def test_other_bad_values_also_name_their_variable(variable, value):
    with pytest.raises(ConfigError) as raised:
        _from_env(**{variable: value})
    _assert_one_line_naming(raised.value, variable)


@pytest.mark.parametrize(
    "url",
    ["shop.example.com", "ftp://shop.example.com", "http://shop.example.com:abc", "http://[::1", "http://"],
)
def test_a_public_url_the_sandbox_could_not_post_to_names_the_variable(url):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_PUBLIC_URL=url)
    _assert_one_line_naming(raised.value, "MARKET_PUBLIC_URL")


@pytest.mark.parametrize(
    "url", ["http://market:8000", "https://shop.example.com/market", "http://[::1]:8000"]
)
def test_a_public_url_with_a_host_and_port_is_taken(url):
    assert _from_env(MARKET_PUBLIC_URL=url).public_url == url


def test_a_bad_switch_says_the_words_it_takes():
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_RATE_LIMITS="maybe")
    assert (
        str(raised.value) == "MARKET_RATE_LIMITS: expected on/off (or 1/0, true/false, yes/no), got 'maybe'"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # str.isdigit() takes these, int() refuses them: a traceback at start instead of one line.
        ("MARKET_WEBHOOK_RETRY_SCHEDULE", "5s,\u00b2m"),
        ("MARKET_RATE_LIMIT_SIGN_IN", "20/\u00b2m"),
        ("MARKET_CART_ABANDON_AFTER", "\u00b2h"),
        # Read as 5 by int(): not a number anyone meant to write.
        ("MARKET_WEBHOOK_RETRY_SCHEDULE", "\u0665s"),
        # A delay no timestamp can hold: every failed delivery's next attempt overflowed in the worker.
        ("MARKET_WEBHOOK_RETRY_SCHEDULE", "5s,3000000d"),
    ],
)
def test_numbers_in_durations_and_rates_are_ascii_digits_within_bounds(variable, value):
    with pytest.raises(ConfigError) as raised:
        _from_env(**{variable: value})
    _assert_one_line_naming(raised.value, variable)


@pytest.mark.parametrize(("raw", "seconds"), [("60", 60), ("10s", 10), ("2m", 120)])
def test_the_reconcile_interval_takes_seconds_or_a_duration(raw, seconds):
    assert _from_env(MARKET_RECONCILE_INTERVAL=raw).payments.reconcile_interval_s == seconds


def test_blank_numbers_fall_back_to_their_defaults():
    assert _from_env(MARKET_PORT="  ").server.port == 8000


# --- DatabaseURL ------------------------------------------------------------------------------------------


def test_a_sqlite_url_with_three_slashes_is_a_relative_path():
    url = DatabaseURL.parse("sqlite:///var/market.db")
    assert (url.engine, url.path, url.name) == ("sqlite", "var/market.db", "market.db")
    assert not Path(url.path).is_absolute()


def test_a_sqlite_url_with_four_slashes_is_an_absolute_path():
    url = DatabaseURL.parse("sqlite:////srv/market/data.db")
    assert (url.engine, url.path, url.name) == ("sqlite", "/srv/market/data.db", "data.db")


def test_a_postgresql_url_gives_a_dsn_and_the_database_name():
    url = DatabaseURL.parse("postgresql://user@host:5432/db")
    assert url.engine == "postgresql"
    assert url.dsn == "postgresql://user@host:5432/db"
    assert url.name == "db"
    assert url.path is None


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+asyncpg", "POSTGRESQL"])
def test_postgresql_scheme_aliases_give_a_plain_postgresql_dsn(scheme):
    url = DatabaseURL.parse(f"{scheme}://user@host:5432/db")
    assert (url.engine, url.dsn) == ("postgresql", "postgresql://user@host:5432/db")


def test_the_redacted_url_hides_the_password_only():
    url = DatabaseURL.parse("postgresql://market:s3cret@host:5432/db")
    assert url.redacted() == "postgresql://market:***@host:5432/db"
    assert "s3cret" not in url.redacted()


def test_a_parse_error_names_the_variable_it_was_given():
    with pytest.raises(ConfigError) as raised:
        DatabaseURL.parse("nonsense", variable="MARKET_BACKUP_DATABASE_URL")
    _assert_one_line_naming(raised.value, "MARKET_BACKUP_DATABASE_URL")


# --- .env -------------------------------------------------------------------------------------------------


def test_dotenv_values_are_used_and_real_environment_variables_win(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# local development\n"
        "\n"
        "MARKET_PORT=9000\n"
        "export MARKET_HOST=0.0.0.0\n"
        "MARKET_DATABASE_URL='sqlite:///from/dotenv.db'\n"
        'SENTRY_ENVIRONMENT="staging"\n'
    )
    settings = _from_env(dotenv, MARKET_PORT="9100")
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.database.url.path == "from/dotenv.db"
    assert settings.sentry.environment == "staging"


def test_a_bad_value_in_dotenv_names_the_variable(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MARKET_PORT=http\n")
    with pytest.raises(ConfigError) as raised:
        _from_env(dotenv)
    _assert_one_line_naming(raised.value, "MARKET_PORT")


def test_a_malformed_dotenv_line_names_the_file_and_line(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MARKET_PORT=9000\nthis is not a setting\n")
    with pytest.raises(ConfigError) as raised:
        read_dotenv(dotenv)
    _assert_one_line_naming(raised.value, f"{dotenv}:2")


def test_a_missing_dotenv_file_is_no_error(tmp_path):
    assert read_dotenv(tmp_path / "absent.env") == {}
    assert _from_env(tmp_path / "absent.env").server.port == 8000


def test_analytics_settings_default_to_a_400_day_retention_and_a_24_hour_abandon_window():
    analytics = _from_env().analytics
    assert (analytics.retention_days, analytics.cart_abandon_after_s) == (400, 86400)


@pytest.mark.parametrize(
    ("raw", "seconds"), [("0", 0), ("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("2d", 172800)]
)
def test_the_cart_abandon_window_reads_seconds_or_a_unit(raw, seconds):
    assert _from_env(MARKET_CART_ABANDON_AFTER=raw).analytics.cart_abandon_after_s == seconds


@pytest.mark.parametrize("raw", ["-5", "1.5h", "h", "10w", "soon", "99999999d"])
def test_a_bad_cart_abandon_window_names_the_variable(raw):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_CART_ABANDON_AFTER=raw)
    _assert_one_line_naming(raised.value, "MARKET_CART_ABANDON_AFTER")


def test_a_bad_analytics_retention_names_the_variable():
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_ANALYTICS_RETENTION_DAYS="0")
    _assert_one_line_naming(raised.value, "MARKET_ANALYTICS_RETENTION_DAYS")


@pytest.mark.parametrize(
    "key",
    [
        "Z",  # one character
        "s3cr3t-but-only-31-bytes-long!!",  # one byte short of the minimum
        "a" * 64,  # long, but one repeated character
        "abab" * 16,  # long, but two characters over and over
    ],
)
def test_a_short_or_repetitive_secret_key_stops_the_start_naming_the_variable(key):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_SECRET_KEY=key)
    _assert_one_line_naming(raised.value, "MARKET_SECRET_KEY")
    assert key not in str(raised.value)  # the start-up line must not print the (bad) secret


@pytest.mark.parametrize("key", ["", "   "])
def test_a_secret_key_set_but_empty_stops_the_start_instead_of_generating_one(key):
    with pytest.raises(ConfigError) as raised:
        _from_env(MARKET_SECRET_KEY=key)
    _assert_one_line_naming(raised.value, "MARKET_SECRET_KEY")


def test_an_unset_secret_key_is_generated_later():
    assert Settings.from_env({}, dotenv=None).auth.secret_key is None


@pytest.mark.parametrize(
    "key",
    [
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # openssl rand -hex 32
        "q1wXsR3mH0dYgO8kZpL2vBnT6cE9aJ4uFyIeW7hKx5s=",  # openssl rand -base64 32
        "s3cr3t-exactly-32-bytes-long!!!!",
    ],
)
def test_a_secret_key_of_32_bytes_or_more_in_hex_base64_or_raw_form_is_accepted(key):
    assert _from_env(MARKET_SECRET_KEY=key).auth.secret_key == key


def test_database_timeouts_default_to_5_s_statements_2_s_locks_and_5_s_for_a_pooled_connection():
    database = Settings.from_env({}, dotenv=None).database
    assert (database.statement_timeout_s, database.lock_timeout_s, database.pool_timeout_s) == (5, 2, 5)


def test_database_timeouts_read_seconds_or_a_unit():
    database = Settings.from_env(
        {
            "MARKET_DATABASE_STATEMENT_TIMEOUT": "1m",
            "MARKET_DATABASE_LOCK_TIMEOUT": "3",
            "MARKET_DATABASE_POOL_TIMEOUT": "10s",
        },
        dotenv=None,
    ).database
    assert (database.statement_timeout_s, database.lock_timeout_s, database.pool_timeout_s) == (60, 3, 10)


@pytest.mark.parametrize(
    "variable",
    ["MARKET_DATABASE_STATEMENT_TIMEOUT", "MARKET_DATABASE_LOCK_TIMEOUT", "MARKET_DATABASE_POOL_TIMEOUT"],
)
@pytest.mark.parametrize("raw", ["0", "soon", "-1"])
def test_a_database_timeout_that_is_not_a_positive_duration_names_its_variable(variable, raw):
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env({variable: raw}, dotenv=None)


def _declared_settings(section: type = Settings) -> list[tuple[type, str, str]]:
    """(section, field, variable) for every setting, walking nested sections."""
    found = []
    for f in fields(section):
        if "section" in f.metadata:
            found += _declared_settings(f.metadata["section"])
        else:
            assert "variable" in f.metadata, f"{section.__name__}.{f.name} is not declared with setting()"
            found.append((section, f.name, f.metadata["variable"]))
    return found


def _field_docstrings() -> dict[tuple[str, str], str]:
    """The string right under each annotated field of each class in market/config.py."""
    docs = {}
    for node in ast.walk(ast.parse(inspect.getsource(config))):
        if isinstance(node, ast.ClassDef):
            for line, after in zip(node.body, [*node.body[1:], None], strict=True):
                if (
                    isinstance(line, ast.AnnAssign)
                    and isinstance(line.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                ):
                    docs[(node.name, line.target.id)] = after.value.value
    return docs


def _readme_configuration_variables() -> set[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_every_setting_names_its_variable_in_its_docstring_and_in_the_readme_configuration_table():
    declared = _declared_settings()
    docs = _field_docstrings()
    documented = _readme_configuration_variables()
    assert len({variable for _, _, variable in declared}) == len(declared), "a variable is read twice"
    undocumented = [
        f"{section.__name__}.{name} ({variable})"
        for section, name, variable in declared
        if variable not in docs.get((section.__name__, name), "")
    ]
    assert not undocumented, "these field docstrings do not name their variable"
    missing = sorted(variable for _, _, variable in declared if variable not in documented)
    assert not missing, "these variables have no row in README's Configuration table"


def test_max_body_bytes_is_read_from_its_variable_with_a_one_mib_default():
    assert _from_env().server.max_body_bytes == 1024 * 1024
    assert _from_env(MARKET_MAX_BODY_BYTES="4096").server.max_body_bytes == 4096
    with pytest.raises(ConfigError) as error:
        _from_env(MARKET_MAX_BODY_BYTES="0")
    _assert_one_line_naming(error.value, "MARKET_MAX_BODY_BYTES")


def test_keep_alive_is_read_from_its_variable_with_a_75_second_default():
    assert _from_env().server.keep_alive_s == 75
    assert _from_env(MARKET_KEEP_ALIVE_S="620").server.keep_alive_s == 620
    with pytest.raises(ConfigError) as error:
        _from_env(MARKET_KEEP_ALIVE_S="0")
    _assert_one_line_naming(error.value, "MARKET_KEEP_ALIVE_S")
