"""Test fixtures: every API test runs on SQLite and, when configured, on PostgreSQL with Redis.

PostgreSQL tests connect as a separate application role (not the table owner), exactly as production.

What a test costs is kept small, because the suite only grows:

- The application is built once per backend and session (building one takes a third of a second, as long as a
  typical test); its start-up and shut-down still run around every test, so each test has fresh connections.
  SQLite tests therefore get their copy of the once-migrated template always at the same path.
- PostgreSQL: the schema is migrated once per session; between tests the owner deletes every row in one round
  trip (TRUNCATE of every table took a fifth of a second).
- Tokens are minted by the hub's token service (:func:`login`) instead of signing in over HTTP; the tests about
  signing in use :func:`sign_in`, the real endpoint.

Under pytest-xdist every worker has its own PostgreSQL database (the configured database's name plus the
worker id, e.g. ``test_gw1``; the worker creates and migrates it) and its own Redis database (the configured
number plus the worker's index), so that workers never see each other's rows, keys or queued jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from api.app import create_app
from core import migrate
from core.db import make_engine, make_sessionmaker
from core.schema import metadata
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from litestar import Litestar
    from redis import Redis

    from api.hub import Hub

# The worker's id ("gw0", "gw1", ...) when pytest-xdist runs the suite; None otherwise.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def worker_postgres_url(url: str | None) -> str | None:
    """The configured PostgreSQL URL with this worker's own database (``<name>_<worker id>``)."""
    if not url or not WORKER:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{WORKER}").render_as_string(hide_password=False)


def worker_redis_url(url: str | None) -> str | None:
    """The configured Redis URL with this worker's own database (the configured number plus its index)."""
    if not url or not WORKER:
        return url
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0) + int(WORKER.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{number}"))


PG_URL = worker_postgres_url(os.environ.get("CAREHUB_TEST_POSTGRES_URL"))
PG_APP_URL = worker_postgres_url(os.environ.get("CAREHUB_TEST_POSTGRES_APP_URL"))
REDIS_URL = worker_redis_url(os.environ.get("CAREHUB_TEST_REDIS_URL"))
REQUIRE_SERVICES = os.environ.get("CAREHUB_REQUIRE_SERVICES") == "1"
KEEP_TABLES = {"alembic_version", "casbin_rules"}
PASSWORD = "correct-horse-battery"
PASSWORD_TIME_COST = 1
PASSWORD_MEMORY_KIB = 64

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
        "password_time_cost": PASSWORD_TIME_COST,
        "password_memory_kib": PASSWORD_MEMORY_KIB,
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


@functools.cache
def password_hash() -> str:
    """:data:`PASSWORD` hashed once per session (argon2 is slow on purpose), at the tests' cost settings."""
    from tenants import passwords

    passwords.configure(PASSWORD_TIME_COST, PASSWORD_MEMORY_KIB)
    return passwords.hash_password(PASSWORD)


# SQLite ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    migrate.upgrade(base_settings(database_url=f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every SQLite test's database lives, one test after the other."""
    return tmp_path_factory.mktemp("hub") / "carehub.sqlite3"


def _fresh_sqlite(template: Path, path: Path) -> None:
    """Put a copy of the template at ``path``; a connection a finished test left open keeps the old file."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copy(template, path)


# PostgreSQL and Redis -------------------------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_worker_database() -> None:
    """Create this xdist worker's database, next to the configured one, when it does not exist yet."""
    import asyncpg

    configured = os.environ["CAREHUB_TEST_POSTGRES_URL"]
    name = make_url(PG_URL or "").database
    conn = await asyncpg.connect(_asyncpg_dsn(configured))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _execute_as_owner(owner_url: str, statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(owner_url))
    try:
        await conn.execute(statements)
    finally:
        await conn.close()


@contextlib.contextmanager
def _one_worker_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Serialise a step across xdist workers: creating databases, and roles (which the databases share)."""
    if not WORKER:
        yield
        return
    import fcntl

    with open(tmp_path_factory.getbasetemp().parent / "postgres-roles.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def postgres_ready(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate this run's PostgreSQL database; the answer is the statement list that empties its data tables."""
    assert PG_URL and PG_APP_URL
    try:
        if WORKER:
            with _one_worker_at_a_time(tmp_path_factory):
                asyncio.run(_create_worker_database())
        asyncio.run(_execute_as_owner(PG_URL, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"))
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    settings = base_settings(database_url=PG_APP_URL, migration_database_url=PG_URL)
    migrate.upgrade(settings)
    with _one_worker_at_a_time(tmp_path_factory):
        asyncio.run(migrate.grant_app_role(settings))
    tables = [t.name for t in metadata().sorted_tables if t.name not in KEEP_TABLES]
    # Row by row is far quicker than TRUNCATE for tables this small (TRUNCATE replaces every table's files);
    # replica mode turns off the append-only triggers and the foreign-key checks for this transaction only.
    return "; ".join(
        ["BEGIN", "SET LOCAL session_replication_role = replica", *(f"DELETE FROM {t}" for t in tables), "COMMIT"]
    )


@pytest.fixture(scope="session")
def redis_client() -> Iterator[Redis | None]:
    if not REDIS_URL:
        yield None
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ResponseError as exc:  # e.g. "DB index is out of range": more workers than databases
        pytest.fail(f"Redis at {REDIS_URL} (this worker's database) refuses it: {exc}; run fewer workers")
    try:
        yield client
    finally:
        client.close()


# The database and the application -------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest) -> Settings:
    if backend == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")
        _fresh_sqlite(request.getfixturevalue("sqlite_template"), path)
        return base_settings(database_url=f"sqlite+aiosqlite:///{path}")
    assert PG_URL and PG_APP_URL
    asyncio.run(_execute_as_owner(PG_URL, request.getfixturevalue("postgres_ready")))
    redis = request.getfixturevalue("redis_client")
    if redis is not None:
        keys = list(redis.scan_iter("carehub:*", count=1000))
        if keys:
            redis.delete(*keys)
    return base_settings(database_url=PG_APP_URL, migration_database_url=PG_URL, redis_url=REDIS_URL)


_shared_apps: dict[str, Litestar] = {}


async def _app_for(backend: str, settings: Settings) -> Litestar:
    """The backend's application, built once per session and started afresh by every test's client.

    Every test client runs the application in an event loop of its own: what the hub keeps from one start to
    the next (its engines, disposed at shut-down; its Redis client, closed) must not stay bound to a loop.
    """
    app = _shared_apps.get(backend)
    if app is None or app.state.hub.settings != settings:
        app = _shared_apps[backend] = create_app(settings)
    for name in ("rate_limit_token", "rate_limit_api"):
        store = app.stores.get(name)
        if isinstance(store, MemoryStore):
            await store.delete_all()  # each test starts with the whole rate-limit budget
    return app


@pytest.fixture
async def client(backend: str, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=await _app_for(backend, settings)) as test_client:
        yield test_client


# The world: who is there before a test starts -------------------------------------------------------------------


@dataclass
class World:
    """A small network: two active hospitals with an admin and a clinician each, and a network admin."""

    tenant_a: uuid.UUID
    tenant_b: uuid.UUID
    slug_a: str = "hospital-a"
    slug_b: str = "hospital-b"


async def _build_world(settings: Settings) -> World:
    from core.db import utcnow
    from tenants.context import tenant_context
    from tenants.models import Membership, Network, Tenant, User

    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    hashed = password_hash()
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


# Tokens ---------------------------------------------------------------------------------------------------------


async def _mint(hub: Hub, email: str, tenant: str | None) -> str:
    from tenants import accounts
    from tenants.context import tenant_context
    from tenants.models import Tenant, User

    async with hub.db() as session:
        user = await session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == tenant)) if tenant else None
    assert user is not None, f"no user {email}"
    assert tenant is None or tenant_id is not None, f"no tenant {tenant}"
    token, _ = hub.tokens.issue(user.id, tenant_id, user.token_version)
    claims = hub.tokens.verify(token)
    if tenant_id is None:
        async with hub.db() as session:
            await accounts.resolve(session, user.id, None, claims.token_version, claims.issued_at)
    else:
        with tenant_context(tenant_id):
            async with hub.db() as session, session.begin():
                await accounts.resolve(session, user.id, tenant_id, claims.token_version, claims.issued_at)
    return token


async def login(client: AsyncTestClient[Any], email: str, tenant: str | None) -> dict[str, str]:
    """Headers with a token for ``email`` in ``tenant`` (None: a network administrator), minted by the hub.

    The token is the one signing in would give: the same service issues it with the user's current token
    version, and the check the hub makes of every request (:func:`tenants.accounts.resolve`) must accept it
    here, so a user who could not sign in gets no token. Tests about signing in itself use :func:`sign_in`.
    """
    # Where the client runs the application (its start-up made the pooled connections there).
    with client.portal() as portal:
        token = portal.call(_mint, client.app.state.hub, email, tenant)
    return {"Authorization": f"Bearer {token}"}


async def sign_in(
    client: AsyncTestClient[Any], email: str, tenant: str | None, password: str = PASSWORD
) -> dict[str, str]:
    """Headers with a token from the sign-in endpoint, for tests about signing in, sign-out and revocation."""
    body: dict[str, Any] = {"email": email, "password": password}
    if tenant:
        body["tenant"] = tenant
    response = await client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def portal_login(
    client: AsyncTestClient[Any], staff: dict[str, str], patient_id: str, email: str, tenant: str
) -> dict[str, str]:
    """Invite a patient to the portal through the API, accept the invitation: the patient's headers."""
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The chaos suite's figures per fault, when it ran (see tests/chaos/summary.py)."""
    from tests.chaos.summary import write_summary

    write_summary(terminalreporter)
