"""A network administrator's request acts in no tenant: tenant-owned data is out of its reach (it fails closed),
except where a service opens a network-wide view for a legitimate reason (onboarding, the network settings)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import get
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from api.app import create_app
from api.deps import Caller, Db
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants.context import NoTenantContext, tenant_context
from tenants.models import Membership
from tenants.scope import network_wide
from tests.conftest import World, login


@get("/api/v1/test-only/memberships")
async def memberships(session: Db, principal: Caller) -> list[str]:
    """What an ordinary service would do: read a tenant-owned table, without asking for a network-wide view."""
    return [str(m.user_id) for m in (await session.scalars(select(Membership))).all()]


@get("/api/v1/test-only/memberships/raw")
async def memberships_raw(session: Db, principal: Caller) -> int:
    """The same read in raw SQL, which the ORM filter cannot see: row-level security answers for it."""
    return int((await session.execute(text("SELECT count(*) FROM memberships"))).scalar_one())


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings)
    app.register(memberships)
    app.register(memberships_raw)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_network_admin_request_outside_a_network_wide_view_fails_closed(
    client: AsyncTestClient[Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    own = await client.get("/api/v1/test-only/memberships", headers=admin_a)
    assert own.status_code == 200 and len(own.json()) == 3, "a tenant's caller reads its own tenant's rows"

    network = await login(client, "net@test.example", None)
    with caplog.at_level(logging.ERROR):
        refused = await client.get("/api/v1/test-only/memberships", headers=network)
    assert refused.status_code == 500
    assert "user_id" not in refused.text and refused.json()["detail"] == "the server could not complete the request"
    assert any(isinstance(r.exc_info and r.exc_info[1], NoTenantContext) for r in caplog.records)

    # The legitimate network-wide views answer as before.
    tenants = await client.get("/api/v1/network/tenants", headers=network)
    assert tenants.status_code == 200
    assert sorted(t["member_count"] for t in tenants.json()["items"]) == [2, 3]
    default = await client.put("/api/v1/network/consent-default", json={"consent_default": "opt_in"}, headers=network)
    assert default.status_code == 200, default.text
    for_a = (await client.get("/api/v1/audit-events?action=network.consent_default", headers=admin_a)).json()
    assert len(for_a["items"]) == 1, "the network setting is written in each tenant's log"


@pytest.mark.postgres_only
async def test_network_admin_raw_sql_sees_no_tenant_rows(client: AsyncTestClient[Any], world: World) -> None:
    network = await login(client, "net@test.example", None)
    counted = await client.get("/api/v1/test-only/memberships/raw", headers=network)
    assert counted.status_code == 200 and counted.json() == 0, "row-level security admits no tenant's rows"
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/test-only/memberships/raw", headers=admin_a)).json() == 3


async def test_network_wide_view_needs_a_transaction_begun_inside_it(settings: Settings, world: World) -> None:
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    try:
        async with db() as session:
            async with network_wide(session, "test: every tenant's members") as network:
                everyone = (await network.scalars(select(Membership))).all()
            assert len(everyone) == 5
        async with db() as session:
            await session.scalar(select(1))  # begun outside any scope
            with pytest.raises(NoTenantContext):
                async with network_wide(session, "test: too late"):
                    pass
        with tenant_context(world.tenant_a):
            async with db() as session:
                with pytest.raises(NoTenantContext):
                    async with network_wide(session, "test: a tenant's caller"):
                        pass
    finally:
        await engine.dispose()
