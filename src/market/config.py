"""Settings from the environment (and `.env`), read once at start: one frozen dataclass per section.

A bad value raises `ConfigError` whose message is one line naming the variable; the CLI prints it and exits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_DATABASE_URL = "sqlite:///var/market.db"


class ConfigError(Exception):
    """A setting has a value the service cannot use. The message names the variable."""


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A database URL in the SQLAlchemy convention, split into what the engines need."""

    engine: str  # "postgresql" or "sqlite"
    url: str
    path: str | None = None  # sqlite: the file
    dsn: str | None = None  # postgresql: a libpq/asyncpg DSN
    name: str = ""  # the database name (sqlite: the file name)

    @classmethod
    def parse(cls, url: str, variable: str = "MARKET_DATABASE_URL") -> DatabaseURL:
        """`sqlite:///relative/path`, `sqlite:////absolute/path`, `postgresql://user@host:port/db`
        (also `postgres://` and `postgresql+asyncpg://`)."""
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ConfigError(f"{variable}: expected a URL like sqlite:///var/market.db, got {url!r}")
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            if not rest.startswith("/") or rest == "/":
                raise ConfigError(f"{variable}: a SQLite URL needs a path, as in sqlite:///var/market.db")
            path = rest[1:]  # 'sqlite:///x' -> 'x'; 'sqlite:////abs/x' -> '/abs/x'
            return cls(engine="sqlite", url=url, path=path, name=Path(path).name)
        if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
            parts = urlsplit("postgresql://" + rest)
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                raise ConfigError(f"{variable}: the port in the PostgreSQL URL is not a number") from None
            name = unquote(parts.path.lstrip("/"))
            if not name:
                raise ConfigError(f"{variable}: the PostgreSQL URL names no database, as in .../market")
            return cls(engine="postgresql", url=url, dsn="postgresql://" + rest, name=name)
        raise ConfigError(f"{variable}: unsupported scheme {scheme!r}; use sqlite:/// or postgresql://")

    def redacted(self) -> str:
        """The URL without its password, for logs."""
        if self.engine != "postgresql":
            return self.url
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: DatabaseURL
    """Which database to use (MARKET_DATABASE_URL)."""
    pool_size: int = 10
    """Connections per worker process in the PostgreSQL pool (MARKET_DATABASE_POOL_SIZE)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    """Interface `market serve` binds (MARKET_HOST)."""
    port: int = 8000
    """Port `market serve` listens on (MARKET_PORT)."""
    public_url: str = ""
    """Where this service is reachable from outside (MARKET_PUBLIC_URL); defaults to http://host:port."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted; bigger ones get 413."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    secret_key: str | None = None
    """Signs bearer tokens (MARKET_SECRET_KEY). None: one is generated into the var folder on first start."""
    token_ttl_seconds: int = 3600
    """Lifetime of an access token (MARKET_TOKEN_TTL_SECONDS)."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    service_name: str = "market"
    """OTEL_SERVICE_NAME."""
    console: bool = False
    """Print spans to stderr for a quick look (MARKET_TELEMETRY_CONSOLE=1)."""
    log_level: str = "INFO"
    """Threshold of the JSON log lines on stdout (MARKET_LOG_LEVEL)."""


@dataclass(frozen=True, slots=True)
class SentrySettings:
    dsn: str | None = None
    """SENTRY_DSN; Sentry is off when unset."""
    environment: str = "production"
    """SENTRY_ENVIRONMENT."""
    release: str | None = None
    """SENTRY_RELEASE; defaults to the package version."""


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings
    var_dir: Path = Path("var")
    """Where the embedded default keeps its files (MARKET_VAR_DIR)."""
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    sentry: SentrySettings = field(default_factory=SentrySettings)

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Read every section. Real environment variables win over `.env` lines."""
        env = _Env(
            {**(read_dotenv(dotenv) if dotenv else {}), **(os.environ if environ is None else environ)}
        )
        return cls(
            database=DatabaseSettings(
                url=DatabaseURL.parse(env.str("MARKET_DATABASE_URL", DEFAULT_DATABASE_URL)),
                pool_size=env.int("MARKET_DATABASE_POOL_SIZE", 10, minimum=1, maximum=1000),
            ),
            var_dir=Path(env.str("MARKET_VAR_DIR", "var")),
            server=ServerSettings(
                host=env.str("MARKET_HOST", "127.0.0.1"),
                port=env.int("MARKET_PORT", 8000, minimum=0, maximum=65535),
                public_url=env.str("MARKET_PUBLIC_URL", "").rstrip("/"),
            ),
            auth=AuthSettings(
                secret_key=env.str("MARKET_SECRET_KEY", "") or None,
                token_ttl_seconds=env.int("MARKET_TOKEN_TTL_SECONDS", 3600, minimum=60, maximum=30 * 86400),
            ),
            telemetry=TelemetrySettings(
                service_name=env.str("OTEL_SERVICE_NAME", "market"),
                console=env.bool("MARKET_TELEMETRY_CONSOLE", False),
                log_level=env.choice("MARKET_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            ),
            sentry=SentrySettings(
                dsn=env.str("SENTRY_DSN", "") or None,
                environment=env.str("SENTRY_ENVIRONMENT", "production"),
                release=env.str("SENTRY_RELEASE", "") or None,
            ),
        )


class _Env:
    """Typed reads with one-line errors naming the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def str(self, name: str, default: str) -> str:
        return self._values.get(name, default).strip()

    def int(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self._values.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}: must be between {minimum} and {maximum}, got {value}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self._values.get(name, "").strip().lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected 1/0 or true/false, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._values.get(name, default).strip().upper() or default
        if value not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return value


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines; `#` comments, blank lines, optional `export ` and surrounding quotes allowed."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
