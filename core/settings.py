"""Settings read from ``CAREHUB_*`` environment variables and validated at start-up."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

LOCAL_KEY_FILE = "jwt-signing.key"
LOCAL_PLUGIN_KEY_FILE = "plugin-secrets.key"
CHANNEL_PREFIX = "CAREHUB_CHANNEL_"


def _channel_environment() -> dict[str, str]:
    """Every ``CAREHUB_CHANNEL_<KEY>`` variable as ``<key>`` (lower case): the notification channels' settings."""
    return {
        name[len(CHANNEL_PREFIX) :].lower(): value
        for name, value in os.environ.items()
        if name.upper().startswith(CHANNEL_PREFIX) and len(name) > len(CHANNEL_PREFIX)
    }


def _new_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _local_file(data: dict[str, Any], name: str, make: Any, what: str) -> str:
    """The secret kept in ``data_dir``/``name``, made once (readable by this user only)."""
    path = Path(str(data.get("data_dir") or "var")) / name
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
        return path.read_text().strip()
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"CAREHUB_DATA_DIR: cannot keep the local {what} there ({exc})") from None


class SettingsError(Exception):
    """A setting has a bad value; the message names the environment variable."""


class Settings(BaseSettings):
    """All runtime configuration of a carehub process."""

    model_config = SettingsConfigDict(env_prefix="CAREHUB_", extra="ignore", frozen=True)

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///var/carehub.sqlite3"
    # Migrations run as the owner of the tables; the application connects as a role that is not.
    migration_database_url: str | None = None
    redis_url: str | None = None
    jwt_issuer: str = "carehub"
    jwt_audience: str = "carehub-api"
    # Where the embedded default keeps its files (its signing key when CAREHUB_JWT_KEYS is not set).
    data_dir: str = "var"
    # Where message attachments are kept (content-addressed files); unset: <data_dir>/blobs.
    blob_dir: Path | None = None
    # JSON object of key id -> secret; the active key signs, every listed key verifies (rotation).
    # Required in production; elsewhere a random key is made once and kept in data_dir.
    jwt_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    jwt_active_kid: str = "local"
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # A token living longer than this (from its issue time, or from now) is refused, whoever signed it.
    jwt_max_lifetime_seconds: int = Field(default=86400, ge=60, le=7 * 86400)
    password_time_cost: int = Field(default=3, ge=1, le=10)
    password_memory_kib: int = Field(default=65536, ge=64, le=1048576)
    invitation_ttl_hours: int = Field(default=72, ge=1, le=720)
    # Requests per minute per client address; 0 turns the limit off (e.g. behind a gateway that limits).
    rate_limit_token_per_minute: int = Field(default=10, ge=0)
    rate_limit_api_per_minute: int = Field(default=600, ge=0)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # PostgreSQL: a statement running longer, or a transaction left idle longer, is cancelled.
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    db_idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=100)
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=100_000_000)
    # JSON bodies: containers nested deeper, or an array with more items, are refused before decoding.
    max_json_depth: int = Field(default=32, ge=4, le=256)
    max_json_array_items: int = Field(default=10_000, ge=10, le=1_000_000)
    # Addresses of reverse proxies whose X-Forwarded-For is trusted (comma-separated IPs or networks, or "*").
    # Unset: the TCP peer is the client, which is what per-client rate limits count.
    forwarded_allow_ips: str | None = None
    # Background jobs: retries with exponential backoff (counted in the database), a time limit per attempt, how
    # long a message handed to the broker may go without an outcome before the relay hands it over again (the
    # bound on a lost message's delay), and how long a dead worker's messages wait in Redis before another worker
    # takes them over.
    job_max_retries: int = Field(default=8, ge=0, le=100)
    job_min_backoff_ms: int = Field(default=1_000, ge=10)
    job_max_backoff_ms: int = Field(default=600_000, ge=100)
    job_time_limit_ms: int = Field(default=60_000, ge=100)
    job_heartbeat_timeout_ms: int = Field(default=30_000, ge=1_000)
    job_delivery_timeout_ms: int = Field(default=120_000, ge=1_000)
    job_worker_threads: int = Field(default=4, ge=1, le=64)
    relay_interval_ms: int = Field(default=500, ge=10)
    relay_batch: int = Field(default=200, ge=1, le=10_000)
    scheduler_tick_ms: int = Field(default=15_000, ge=100)
    # Run the relay and the event handlers inside the API process (what `carehub demo` does for the embedded
    # default); otherwise run `carehub worker` beside the API.
    jobs_in_process: bool = False
    # Settings of the notification channel plugins (SMTP server, SMS gateway ...): read from every
    # CAREHUB_CHANNEL_<KEY> variable, handed to the plugins as {"<key>": value}. See docs/plugins.md.
    channel_config: dict[str, str] = Field(default_factory=_channel_environment)
    # Keys (Fernet, comma-separated, newest first) that encrypt plugins' sensitive configuration at rest: the
    # first encrypts, all decrypt (rotation). Outside production, with none set, a random key is kept in data_dir.
    plugin_secret_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Networks (CIDR, comma-separated) plugins may call although they are loopback, private or link-local.
    plugin_allow_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long one hook call may take, and the circuit breaker per plugin and tenant: open after this many
    # failures in a row, for this long, then one trial call.
    plugin_timeout_ms: int = Field(default=10_000, ge=10)
    plugin_breaker_failures: int = Field(default=5, ge=1)
    plugin_breaker_cooldown_ms: int = Field(default=60_000, ge=100)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # One line per request from the server (uvicorn's access log). Off by default: it costs a measurable share
    # of a request's time, and a reverse proxy in front usually logs the same.
    access_log: bool = False

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError(f"not a database URL ({exc})") from exc
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(f"unsupported driver {url.drivername!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        entries = [entry.strip() for entry in value.split(",")]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (or *)") from None
        return ",".join(entries)

    @field_validator("plugin_secret_keys", "plugin_allow_networks", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("plugin_secret_keys")
    @classmethod
    def _fernet_keys(cls, value: list[str]) -> list[str]:
        from cryptography.fernet import Fernet

        for n, key in enumerate(value, 1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"key {n} is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                    "`carehub plugins new-key`)"
                ) from None
        return value

    @field_validator("plugin_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP network such as 127.0.0.0/8") from None
        return value

    @field_validator("jwt_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError('must be a JSON object such as {"2026-11": "secret"}') from exc
        return value

    @model_validator(mode="before")
    @classmethod
    def _local_keys(cls, data: Any) -> Any:
        """Outside production, with no keys configured, sign tokens and encrypt plugin secrets with random keys
        kept in ``data_dir``."""
        if not isinstance(data, dict) or data.get("env") == "production":
            return data
        if not data.get("jwt_keys"):
            key = _local_file(data, LOCAL_KEY_FILE, lambda: secrets.token_urlsafe(48), "signing key")
            data = {**data, "jwt_keys": {"local": key}, "jwt_active_kid": data.get("jwt_active_kid") or "local"}
        if not data.get("plugin_secret_keys"):
            data = {**data, "plugin_secret_keys": [_local_file(data, LOCAL_PLUGIN_KEY_FILE, _new_fernet_key, "key")]}
        return data

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        if not self.jwt_keys:
            raise ValueError(
                "CAREHUB_JWT_KEYS: at least one key is needed (a JSON object of key id -> secret; "
                "required in production)"
            )
        for kid, secret in self.jwt_keys.items():
            if len(secret.encode()) < 32:
                raise ValueError(f"CAREHUB_JWT_KEYS: key {kid!r} is shorter than 32 bytes")
        if self.jwt_active_kid not in self.jwt_keys:
            raise ValueError(f"CAREHUB_JWT_ACTIVE_KID: {self.jwt_active_kid!r} is not a key id in CAREHUB_JWT_KEYS")
        if self.jwt_ttl_seconds > self.jwt_max_lifetime_seconds:
            raise ValueError(
                f"CAREHUB_JWT_TTL_SECONDS: {self.jwt_ttl_seconds} is longer than CAREHUB_JWT_MAX_LIFETIME_SECONDS "
                f"({self.jwt_max_lifetime_seconds}); the hub would refuse its own tokens"
            )
        if self.job_delivery_timeout_ms <= self.job_time_limit_ms:
            raise ValueError(
                f"CAREHUB_JOB_DELIVERY_TIMEOUT_MS: {self.job_delivery_timeout_ms} is not longer than "
                f"CAREHUB_JOB_TIME_LIMIT_MS ({self.job_time_limit_ms}); a job still running would be handed over again"
            )
        return self

    @property
    def owner_database_url(self) -> str:
        """URL that migrations use (the table owner)."""
        return self.migration_database_url or self.database_url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, raising one clear :class:`SettingsError` on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        message = first["msg"].removeprefix("Value error, ")
        if loc:
            name = "CAREHUB_" + str(loc[0]).upper()
            raise SettingsError(f"{name}: {message}") from None
        raise SettingsError(message) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
