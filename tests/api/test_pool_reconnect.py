"""A pooled connection whose backend the server ended is replaced before a request runs a statement on it.

carehub checks no connection with a round trip (no pre-ping); these tests end the backends for real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, World, login

pytestmark = pytest.mark.postgres_only


async def _terminate_app_backends(*, wait: bool = True) -> int:
    """End, as the table owner, every backend of the application's pools in this database; wait until gone
    (unless ``wait`` is false: then the client may not have seen the end yet when the next request comes)."""
    assert PG_URL
    owner = await asyncpg.connect(make_url(PG_URL).set(drivername="postgresql").render_as_string(False))
    try:
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'carehub' AND pid <> pg_backend_pid()"
        )
        pids = [row["pid"] for row in await owner.fetch(query)]
        for pid in pids:
            await owner.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100 if wait else 0):
            if not await owner.fetch(query):
                break
            await asyncio.sleep(0.02)
        return len(pids)
    finally:
        await owner.close()


async def test_a_request_after_the_pooled_backends_were_ended_succeeds(
    client: AsyncTestClient[Any], world: World
) -> None:
    headers = await login(client, "doc.a@test.example", world.slug_a)
    created = await client.post(
        "/api/v1/patients",
        json={"mrn": "RC-1", "given_name": "Ada", "family_name": "Pool", "birth_date": "1970-01-01", "sex": "female"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    assert await _terminate_app_backends() >= 1

    response = await client.get(f"/api/v1/patients/{created.json()['id']}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["mrn"] == "RC-1"
    # The write path too, and the audit trail of both requests is there.
    assert await _terminate_app_backends() >= 1
    second = await client.post(
        "/api/v1/patients",
        json={"mrn": "RC-2", "given_name": "Bo", "family_name": "Pool", "birth_date": "1971-01-01", "sex": "male"},
        headers=headers,
    )
    assert second.status_code == 201, second.text


async def test_a_request_right_after_the_backends_were_ended_succeeds(
    client: AsyncTestClient[Any], world: World
) -> None:
    """The server's goodbye may have reached the pooled connection and its socket's end not yet: the request's
    first statement then fails, and runs again on a new connection (nothing of the request had run)."""
    headers = await login(client, "doc.a@test.example", world.slug_a)
    for n in range(5):
        assert await _terminate_app_backends(wait=False) >= 1
        response = await client.post(
            "/api/v1/patients",
            json={
                "mrn": f"RR-{n}",
                "given_name": "Cy",
                "family_name": "Pool",
                "birth_date": "1972-01-01",
                "sex": "male",
            },
            headers=headers,
        )
        assert response.status_code == 201, response.text
        assert (await client.get(f"/api/v1/patients/{response.json()['id']}", headers=headers)).status_code == 200


async def test_no_request_pings_its_connection(client: AsyncTestClient[Any], world: World) -> None:
    """The pool checks connections without a round trip: pre-ping is off on the request pools."""
    hub = client.app.state.hub
    assert hub.engine.pool._pre_ping is False
    assert hub.cross_tenant_engine.pool._pre_ping is False
