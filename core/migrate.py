"""Running migrations and granting the application role its privileges (PostgreSQL)."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.db import make_engine
from core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate the schema as the owner (synchronous: runs its own event loop)."""
    url = settings.owner_database_url
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def app_role(settings: Settings) -> str | None:
    """The PostgreSQL role the application connects as, when it differs from the owner."""
    if not settings.is_postgres:
        return None
    app_user = make_url(settings.database_url).username
    owner_user = make_url(settings.owner_database_url).username
    if not app_user or app_user == owner_user:
        return None
    if not _ROLE_NAME.match(app_user):
        raise ValueError(f"CAREHUB_DATABASE_URL: role name {app_user!r} is not a plain identifier")
    return app_user


async def grant_app_role(settings: Settings) -> str | None:
    """Create the application role if it is missing and grant it data access, nothing more.

    The role owns nothing, cannot bypass row-level security, and may only read and append the audit log.
    """
    role = app_role(settings)
    if role is None:
        return None
    password = make_url(settings.database_url).password
    engine = make_engine(settings.owner_database_url)
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            if not exists:
                await conn.execute(text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"))
            if password:
                quoted = str(password).replace("'", "''")
                await conn.execute(text(f"ALTER ROLE {role} PASSWORD '{quoted}'"))
            statements = [
                f"GRANT USAGE ON SCHEMA public TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
                f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {role}",
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {role}",
            ]
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()
    return role
