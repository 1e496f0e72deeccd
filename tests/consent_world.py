"""A network of three tenants for the consent tests: Hospital A, Clinic B and Clinic C, with staff in each.

Users (password ``PASSWORD``): ``<role>.<x>@net.example`` for x in a, b, c and role in admin (tenant_admin),
doc and doc2 (clinicians), cm (care_manager), privacy (privacy_officer), chw (chw); ``net@net.example`` is the network
administrator. :func:`person_in` creates one human's record in several tenants through the API (linked by a
shared network identifier).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import AsyncTestClient

from core.db import make_engine, make_sessionmaker, utcnow
from core.settings import Settings
from tenants.context import tenant_context
from tenants.models import Membership, Network, Tenant, User
from tests.conftest import login, password_hash
from tests.factories import patient_body

KEYS = ("a", "b", "c")
ROLES = {
    "admin": "tenant_admin",
    "doc": "clinician",
    "doc2": "clinician",
    "cm": "care_manager",
    "privacy": "privacy_officer",
    "chw": "chw",
}


@dataclass
class Net:
    network_id: uuid.UUID
    tenants: dict[str, uuid.UUID]
    slugs: dict[str, str]
    users: dict[str, uuid.UUID]
    _headers: dict[str, dict[str, str]] = field(default_factory=dict)

    async def headers(self, client: AsyncTestClient[Any], who: str) -> dict[str, str]:
        """Signed-in headers for ``who`` (e.g. ``doc.b``, ``net``)."""
        if who not in self._headers:
            tenant = None if who == "net" else self.slugs[who.split(".")[1]]
            self._headers[who] = await login(client, f"{who}@net.example", tenant)
        return self._headers[who]


async def build_net(settings: Settings, *, consent_default: str = "opt_in") -> Net:
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    hashed = password_hash()
    tenants = {key: uuid.uuid4() for key in KEYS}
    slugs = {"a": "hospital-a", "b": "clinic-b", "c": "clinic-c"}
    kinds = {"a": "hospital", "b": "clinic", "c": "clinic"}
    users = {f"{role}.{key}": uuid.uuid4() for role in ROLES for key in KEYS}
    users["net"] = uuid.uuid4()
    network_id = uuid.uuid4()
    try:
        async with db() as session, session.begin():
            session.add(Network(id=network_id, slug="net", name="Test Network", consent_default=consent_default))
            await session.flush()
            for key in KEYS:
                session.add(
                    Tenant(
                        id=tenants[key],
                        network_id=network_id,
                        slug=slugs[key],
                        name=f"{kinds[key].title()} {key.upper()}",
                        kind=kinds[key],
                        status="active",
                        activated_at=utcnow(),
                    )
                )
            for name, user_id in users.items():
                session.add(
                    User(
                        id=user_id,
                        email=f"{name}@net.example",
                        full_name=name,
                        password_hash=hashed,
                        network_role="network_admin" if name == "net" else None,
                    )
                )
        for key in KEYS:
            with tenant_context(tenants[key]):
                async with db() as session, session.begin():
                    for role, role_name in ROLES.items():
                        session.add(Membership(user_id=users[f"{role}.{key}"], roles=[role_name]))
    finally:
        await engine.dispose()
    return Net(network_id, tenants, slugs, users)


async def person_in(
    client: AsyncTestClient[Any], net: Net, keys: str = "abc", *, network_id: str | None = None, **fields: Any
) -> dict[str, str]:
    """One human's record in each tenant of ``keys`` (created by its admin): tenant key -> patient id."""
    shared = network_id or f"NET-{uuid.uuid4().hex[:10]}"
    found = {}
    for key in keys:
        body = patient_body(
            f"MRN-{key.upper()}-{uuid.uuid4().hex[:6]}",
            identifiers=[{"system": "urn:carehub:network-id", "value": shared}],
            **fields,
        )
        response = await client.post("/api/v1/patients", json=body, headers=await net.headers(client, f"admin.{key}"))
        assert response.status_code == 201, response.text
        found[key] = response.json()["id"]
    return found
