"""Tenant isolation below the API: the ORM filter on both databases, row-level security on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker, utcnow
from core.patients.models import Patient, PatientIdentifier
from core.schema import tenant_owned_tables
from core.settings import Settings
from tenants.context import NoTenantContext, network_scope, tenant_context
from tenants.isolation import plain_rows, prebuilt
from tenants.models import Membership, User
from tests.conftest import World


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


def _patient(mrn: str) -> Patient:
    return Patient(
        id=uuid.uuid4(), mrn=mrn, given_name="Test", family_name=mrn, birth_date=date(1970, 1, 1), sex="unknown"
    )


async def _seed_two(db: async_sessionmaker[AsyncSession], world: World) -> None:
    for tenant_id, mrn in ((world.tenant_a, "A-1"), (world.tenant_b, "B-1")):
        with tenant_context(tenant_id):
            async with db() as session, session.begin():
                session.add(_patient(mrn))


async def test_orm_filter_scopes_every_query(db: async_sessionmaker[AsyncSession], world: World) -> None:
    await _seed_two(db, world)
    with tenant_context(world.tenant_a):
        async with db() as session:
            assert [p.mrn for p in (await session.scalars(select(Patient))).all()] == ["A-1"]
            b_id = None
        with network_scope("test: count all"):
            async with db() as session:
                rows = (await session.scalars(select(Patient).order_by(Patient.mrn))).all()
                assert [p.mrn for p in rows] == ["A-1", "B-1"]
                b_id = rows[1].id
        async with db() as session:
            assert await session.get(Patient, b_id) is None


async def test_filter_reaches_joins_counts_and_bulk_statements(
    db: async_sessionmaker[AsyncSession], world: World
) -> None:
    await _seed_two(db, world)
    with tenant_context(world.tenant_a):
        async with db() as session:
            assert await session.scalar(select(func.count()).select_from(Patient)) == 1
            members = (await session.scalars(select(User.email).join(Membership, Membership.user_id == User.id))).all()
            assert sorted(members) == ["admin.a@test.example", "chw.a@test.example", "doc.a@test.example"]
            in_subquery = select(Patient.id).where(Patient.mrn == "B-1").scalar_subquery()
            assert await session.scalar(select(func.count()).where(Patient.id == in_subquery)) == 0
        async with db() as session, session.begin():
            result = await session.execute(
                update(Patient).values(language="xx").execution_options(synchronize_session=False)
            )
            assert result.rowcount == 1
        async with db() as session:
            row = {
                "id": uuid.uuid4(),
                "mrn": "B-2",
                "given_name": "x",
                "family_name": "x",
                "birth_date": date(1970, 1, 1),
                "sex": "unknown",
                "active": True,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
            with pytest.raises(NoTenantContext):
                await session.execute(insert(Patient).values(**row, tenant_id=world.tenant_b))
            with pytest.raises(NoTenantContext):
                await session.execute(insert(Patient).values(**row))
    with tenant_context(world.tenant_b):
        async with db() as session:
            assert (await session.scalars(select(Patient.language))).all() == [None]


async def test_core_statements_on_tenant_tables_are_refused(db: async_sessionmaker[AsyncSession], world: World) -> None:
    await _seed_two(db, world)
    patients = Patient.__table__
    with tenant_context(world.tenant_a):
        async with db() as session:
            with pytest.raises(NoTenantContext, match="Core statements"):
                await session.execute(update(patients).values(language="xx"))
            with pytest.raises(NoTenantContext, match="Core statements"):
                await session.execute(select(func.count()).select_from(patients))
    with network_scope("test: count all"):
        async with db() as session:
            assert await session.scalar(select(func.count()).select_from(patients)) == 2


_MRNS = prebuilt(select(Patient.mrn, Patient.tenant_id).join(PatientIdentifier, isouter=True).order_by(Patient.mrn))


async def test_plain_rows_are_filtered_like_the_sessions_statements(
    db: async_sessionmaker[AsyncSession], world: World
) -> None:
    """The ORM's loading is skipped, not the tenant criteria: joined tables included, and no tenant fails closed."""
    await _seed_two(db, world)
    with tenant_context(world.tenant_a):
        async with db() as session:
            assert [tuple(r) for r in await plain_rows(session, _MRNS, {})] == [("A-1", world.tenant_a)]
            session.add(_patient("A-2"))  # a pending change is written first, as autoflush would
            assert [r.mrn for r in await plain_rows(session, _MRNS, {})] == ["A-1", "A-2"]
            with network_scope("test"), pytest.raises(NoTenantContext):  # the transaction began in tenant A
                await plain_rows(session, _MRNS, {})
            await session.rollback()
    async with db() as session:
        with pytest.raises(NoTenantContext):
            await plain_rows(session, _MRNS, {})
    with network_scope("test: every tenant"):
        async with db() as session:
            assert [r.mrn for r in await plain_rows(session, _MRNS, {})] == ["A-1", "B-1"]
    with tenant_context(world.tenant_a):
        async with db() as session:
            with pytest.raises(ValueError, match="prebuilt"):
                await plain_rows(session, select(Patient.mrn), {})


async def test_entering_network_scope_inside_a_transaction_fails_closed(
    db: async_sessionmaker[AsyncSession], world: World
) -> None:
    with tenant_context(world.tenant_a):
        async with db() as session:
            await session.scalars(select(Patient))
            with network_scope("test"), pytest.raises(NoTenantContext):
                await session.scalars(select(Patient))


async def test_query_without_tenant_context_raises(db: async_sessionmaker[AsyncSession], world: World) -> None:
    await _seed_two(db, world)
    async with db() as session:
        with pytest.raises(NoTenantContext):
            await session.scalars(select(Patient))
        with pytest.raises(NoTenantContext):
            await session.scalar(select(func.count()).select_from(Patient))
        with pytest.raises(NoTenantContext):
            await session.scalars(select(User.email).join(Membership, Membership.user_id == User.id))
        # Network-level tables need no tenant.
        assert await session.scalar(select(func.count()).select_from(User)) == 6
    async with db() as session:
        session.add(_patient("X-1"))
        with pytest.raises(NoTenantContext):
            await session.flush()


async def test_cannot_write_a_row_for_another_tenant(db: async_sessionmaker[AsyncSession], world: World) -> None:
    with tenant_context(world.tenant_a):
        async with db() as session:
            intruder = _patient("A-2")
            intruder.tenant_id = world.tenant_b
            session.add(intruder)
            with pytest.raises(NoTenantContext):
                await session.flush()


async def test_tenant_change_inside_a_transaction_fails_closed(
    db: async_sessionmaker[AsyncSession], world: World
) -> None:
    await _seed_two(db, world)
    with tenant_context(world.tenant_a):
        async with db() as session:
            await session.scalars(select(Patient))
            with tenant_context(world.tenant_b), pytest.raises(NoTenantContext):
                await session.scalars(select(Patient))


async def test_audit_log_is_append_only_in_the_database(
    db: async_sessionmaker[AsyncSession], world: World, backend: str
) -> None:
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            session.add(
                AuditEvent(actor_user_id=None, actor_roles=[], action="test", resource_type="Test", outcome="success")
            )
        for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
            async with db() as session:
                with pytest.raises((DBAPIError, ProgrammingError)):
                    await session.execute(text(statement))
                await session.rollback()
        async with db() as session:
            assert (await session.scalar(text("SELECT action FROM audit_events"))) == "test"


# --- PostgreSQL: row-level security as the backstop -----------------------------------------------------------


@pytest.mark.postgres_only
async def test_raw_sql_sees_only_the_current_tenant(
    db: async_sessionmaker[AsyncSession], world: World, backend: str
) -> None:
    await _seed_two(db, world)
    with tenant_context(world.tenant_a):
        async with db() as session:
            rows = (await session.execute(text("SELECT mrn, tenant_id FROM patients"))).all()
            assert [r.mrn for r in rows] == ["A-1"]
            # Even an explicit filter for the other tenant finds nothing.
            other = await session.scalar(
                text("SELECT count(*) FROM patients WHERE tenant_id = :t"), {"t": world.tenant_b}
            )
            assert other == 0
    async with db() as session:
        assert await session.scalar(text("SELECT count(*) FROM patients")) == 0, "no context: no rows"


@pytest.mark.postgres_only
async def test_raw_insert_into_another_tenant_is_rejected(
    db: async_sessionmaker[AsyncSession], world: World, backend: str
) -> None:
    with tenant_context(world.tenant_a):
        async with db() as session:
            with pytest.raises(DBAPIError, match="row-level security"):
                await session.execute(
                    text(
                        "INSERT INTO patients (id, tenant_id, mrn, given_name, family_name, birth_date, sex, active,"
                        " created_at, updated_at) VALUES (:id, :t, 'X', 'x', 'x', '1970-01-01', 'unknown', true,"
                        " now(), now())"
                    ),
                    {"id": uuid.uuid4(), "t": world.tenant_b},
                )


@pytest.mark.postgres_only
async def test_tenant_setting_does_not_outlive_the_transaction(
    db: async_sessionmaker[AsyncSession], world: World, backend: str
) -> None:
    with tenant_context(world.tenant_a):
        async with db() as session:
            async with session.begin():
                inside = await session.scalar(text("SELECT current_setting('app.tenant_id', true)"))
                assert inside == str(world.tenant_a)
            async with session.begin():
                # A new transaction on the same pooled connection: set again, by our hook, for this tenant only.
                assert await session.scalar(text("SELECT current_setting('app.tenant_id', true)")) == str(
                    world.tenant_a
                )
    async with db() as session:
        leftover = await session.scalar(text("SELECT current_setting('app.tenant_id', true)"))
        assert leftover in ("", None)


@pytest.mark.postgres_only
async def test_application_role_cannot_bypass_rls(db: async_sessionmaker[AsyncSession], backend: str) -> None:
    async with db() as session:
        role = await session.scalar(text("SELECT current_user"))
        flags = (
            await session.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"))
        ).one()
        assert flags == (False, False)
        owners = (
            await session.execute(
                text(
                    "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, c.relforcerowsecurity"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind = 'r'"
                )
            )
        ).all()
    assert owners, "no tables found"
    assert all(row.owner != role for row in owners), "the application role must not own any table"
    by_name = {row.relname: row for row in owners}
    for table in tenant_owned_tables():
        assert by_name[table].relrowsecurity and by_name[table].relforcerowsecurity, table


@pytest.mark.postgres_only
async def test_production_refuses_a_role_that_rls_does_not_bind(settings: Settings) -> None:
    from api.hub import Hub, UnsafeDatabaseRole
    from tests.conftest import base_settings

    keys = {"jwt_keys": {"k": "p" * 40}, "jwt_active_kid": "k"}
    as_owner = base_settings(env="production", database_url=settings.owner_database_url, **keys)
    hub = Hub.create(as_owner)
    try:
        with pytest.raises(UnsafeDatabaseRole, match=r"CAREHUB_DATABASE_URL: .* is a superuser"):
            await hub.start()
    finally:
        await hub.stop()
    as_app = base_settings(
        env="production", database_url=settings.database_url, migration_database_url=settings.owner_database_url, **keys
    )
    hub = Hub.create(as_app)
    try:
        await hub.start()
        assert hub.authorizer is not None
    finally:
        await hub.stop()


@pytest.mark.postgres_only
async def test_server_side_timeouts_are_set(settings: Settings) -> None:
    from api.hub import Hub

    hub = Hub.create(settings)
    try:
        async with hub.engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "30s"
            assert await conn.scalar(text("SHOW idle_in_transaction_session_timeout")) == "1min"
    finally:
        await hub.stop()
