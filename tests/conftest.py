"""Test fixtures: every API test runs on SQLite and, when configured, on PostgreSQL with Redis.

PostgreSQL tests connect as a separate application role (not the table owner), exactly as production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from api.app import create_app
from core import migrate
from core.db import make_engine, make_sessionmaker
from core.schema import metadata
from core.settings import Settings, load_settings

PG_URL = os.environ.get("CAREHUB_TEST_POSTGRES_URL")
PG_APP_URL = os.environ.get("CAREHUB_TEST_POSTGRES_APP_URL")
REDIS_URL = os.environ.get("CAREHUB_TEST_REDIS_URL")
REQUIRE_SERVICES = os.environ.get("CAREHUB_REQUIRE_SERVICES") == "1"
KEEP_TABLES = {"alembic_version", "casbin_rules"}
PASSWORD = "correct-horse-battery"

if REQUIRE_SERVICES and not (PG_URL and PG_APP_URL and REDIS_URL):
    raise RuntimeError(
        "CAREHUB_REQUIRE_SERVICES=1 but CAREHUB_TEST_POSTGRES_URL, CAREHUB_TEST_POSTGRES_APP_URL "
        "or CAREHUB_TEST_REDIS_URL is not set"
    )

BACKENDS = ["sqlite"] + (["postgres"] if PG_URL and PG_APP_URL else [])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` run only in the PostgreSQL leg (deselected, not skipped, elsewhere)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
        (drop if item.get_closest_marker("postgres_only") and not on_postgres else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def base_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "password_time_cost": 1,
        "password_memory_kib": 64,
        "rate_limit_token_per_minute": 10_000,
        "rate_limit_api_per_minute": 100_000,
        "redis_url": None,
        "jwt_keys": {"test": "t" * 40},
        "jwt_active_kid": "test",
        # Attachments sent by tests go to a scratch directory, never into the checkout.
        "blob_dir": Path(tempfile.gettempdir()) / f"carehub-test-blobs-{os.getpid()}",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    migrate.upgrade(base_settings(database_url=f"sqlite+aiosqlite:///{path}"))
    return path


async def _reset_postgres(owner_url: str) -> None:
    engine = make_engine(owner_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_ready() -> bool:
    assert PG_URL and PG_APP_URL
    try:
        asyncio.run(_reset_postgres(PG_URL))
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    settings = base_settings(database_url=PG_APP_URL, migration_database_url=PG_URL)
    migrate.upgrade(settings)
    asyncio.run(migrate.grant_app_role(settings))
    return True


async def _truncate(owner_url: str) -> None:
    engine = make_engine(owner_url)
    try:
        tables = [t.name for t in metadata().sorted_tables if t.name not in KEEP_TABLES]
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if backend == "sqlite":
        db_file = tmp_path / "carehub.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_file)
        return base_settings(database_url=f"sqlite+aiosqlite:///{db_file}")
    request.getfixturevalue("postgres_ready")
    assert PG_URL and PG_APP_URL
    asyncio.run(_truncate(PG_URL))
    if REDIS_URL:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter("carehub:*"):
            client.delete(key)
        client.close()
    return base_settings(database_url=PG_APP_URL, migration_database_url=PG_URL, redis_url=REDIS_URL)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@dataclass
class World:
    """A small network: two active hospitals with an admin and a clinician each, and a network admin."""

    tenant_a: uuid.UUID
    tenant_b: uuid.UUID
    slug_a: str = "hospital-a"
    slug_b: str = "hospital-b"


async def _build_world(settings: Settings) -> World:
    from core.db import utcnow
    from tenants import passwords
    from tenants.context import tenant_context
    from tenants.models import Membership, Network, Tenant, User

    passwords.configure(settings.password_time_cost, settings.password_memory_kib)
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    hashed = passwords.hash_password(PASSWORD)
    ids = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    users = {name: uuid.uuid4() for name in ("net", "admin_a", "doc_a", "admin_b", "doc_b", "chw_a")}
    try:
        async with db() as session, session.begin():
            network = Network(id=uuid.uuid4(), slug="net", name="Test Network")
            session.add(network)
            for key in ("a", "b"):
                session.add(
                    Tenant(
                        id=ids[key],
                        network_id=network.id,
                        slug=f"hospital-{key}",
                        name=f"Hospital {key.upper()}",
                        kind="hospital",
                        status="active",
                        activated_at=utcnow(),
                    )
                )
            for name, user_id in users.items():
                session.add(
                    User(
                        id=user_id,
                        email=f"{name.replace('_', '.')}@test.example",
                        full_name=name,
                        password_hash=hashed,
                        network_role="network_admin" if name == "net" else None,
                    )
                )
        for key in ("a", "b"):
            with tenant_context(ids[key]):
                async with db() as session, session.begin():
                    session.add(Membership(user_id=users[f"admin_{key}"], roles=["tenant_admin"]))
                    session.add(Membership(user_id=users[f"doc_{key}"], roles=["clinician"]))
                    if key == "a":
                        session.add(Membership(user_id=users["chw_a"], roles=["chw"]))
    finally:
        await engine.dispose()
    return World(tenant_a=ids["a"], tenant_b=ids["b"])


@pytest.fixture
async def world(settings: Settings) -> World:
    return await _build_world(settings)


async def login(client: AsyncTestClient[Any], email: str, tenant: str | None) -> dict[str, str]:
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if tenant:
        body["tenant"] = tenant
    response = await client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def portal_login(
    client: AsyncTestClient[Any], staff: dict[str, str], patient_id: str, email: str, tenant: str
) -> dict[str, str]:
    """Invite a patient to the portal through the API, accept the invitation, sign in: the patient's headers."""
    invited = await client.post(
        f"/api/v1/patients/{patient_id}/portal-invitation", json={"email": email}, headers=staff
    )
    assert invited.status_code == 201, invited.text
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invited.json()["token"], "full_name": "Portal Patient", "password": PASSWORD},
    )
    assert accepted.status_code in (200, 201), accepted.text
    return await login(client, email, tenant)
