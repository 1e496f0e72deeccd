"""The migrated schema equals the models, on SQLite and PostgreSQL, and the history runs down and up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core import migrate
from core.authz import DEFAULT_POLICIES
from core.db import make_engine
from core.schema import metadata
from core.settings import Settings
from tests.conftest import base_settings


async def _diff(url: str) -> list[Any]:
    engine = make_engine(url)

    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata()))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_no_drift_between_models_and_migrations(settings: Settings) -> None:
    assert await _diff(settings.owner_database_url) == []


async def test_default_policies_are_seeded(settings: Settings) -> None:
    engine = make_engine(settings.owner_database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT v0, v1, v2, v3 FROM casbin_rules WHERE ptype = 'p'"))).all()
    finally:
        await engine.dispose()
    # The migrations seed exactly the permission set the code documents (and tests and benchmarks use).
    assert sorted(tuple(r) for r in rows) == sorted(DEFAULT_POLICIES)
    assert {r[0] for r in rows} == {
        "network_admin",
        "tenant_admin",
        "care_manager",
        "clinician",
        "chw",
        "partner_staff",
        "privacy_officer",
        "patient",
    }


@pytest.mark.slow
def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    settings = base_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}")
    migrate.upgrade(settings)
    config = migrate.alembic_config(settings.owner_database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    assert asyncio.run(_diff(settings.owner_database_url)) == []
