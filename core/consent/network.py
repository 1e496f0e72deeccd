"""The network's settings and directory: tenant names, its consent default, its linking systems, and which
clinic is a person's primary care. Network administrators act here outside any tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.consent.linking import link_for
from core.consent.models import PatientLink, PatientLinkKey
from core.consent.schemas import LinkSystems, NetworkConsentDefault, PrimaryCareOut
from core.errors import Forbidden, InvalidInput, NotFound
from core.fhir.common import is_mrn_system
from core.patients.models import PatientIdentifier
from core.patients.service import require_patient
from core.principal import Principal
from tenants.isolation import other_tenant_session
from tenants.models import Network, Tenant
from tenants.scope import network_wide


async def tenant_names(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Names of tenants of the network (a directory every tenant may know)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {t.id: t.name for t in await session.scalars(select(Tenant).where(Tenant.id.in_(wanted)))}


async def network_of(session: AsyncSession, tenant_id: uuid.UUID) -> Network:
    network = await session.scalar(
        select(Network).join(Tenant, Tenant.network_id == Network.id).where(Tenant.id == tenant_id)
    )
    assert network is not None
    return network


async def the_network(session: AsyncSession) -> Network:
    """The deployment's network (network administrators act on it, outside any tenant)."""
    network = await session.scalar(select(Network).order_by(Network.created_at).limit(1))
    if network is None:
        raise NotFound("no network")
    return network


async def get_network_default(session: AsyncSession, principal: Principal) -> NetworkConsentDefault:
    principal.require("consent_default", "read")
    network = await the_network(session)
    return msgspec.convert({"consent_default": network.consent_default}, NetworkConsentDefault)


async def set_network_default(
    session: AsyncSession, principal: Principal, data: NetworkConsentDefault
) -> NetworkConsentDefault:
    """The network administrators choose what crosses tenants without a consent (opt-in: nothing)."""
    principal.require("consent_default", "write")
    async with network_wide(session, "network consent default: written in every tenant's audit log"):
        network = await the_network(session)
        before = network.consent_default
        network.consent_default = data.consent_default
        # The change concerns every tenant's patients: it is written in every tenant's audit log.
        await audit_in_every_tenant(
            session, principal, network, "network.consent_default", {"from": before, "to": data.consent_default}
        )
        return msgspec.convert({"consent_default": network.consent_default}, NetworkConsentDefault)


async def audit_in_every_tenant(
    session: AsyncSession, principal: Principal, network: Network, action: str, detail: dict[str, Any]
) -> None:
    """A change to the network's settings, written in every tenant's audit log (inside ``network_wide``)."""
    for tenant_id in await session.scalars(select(Tenant.id).where(Tenant.network_id == network.id)):
        audit.record(
            session,
            principal.actor,
            action=action,
            resource_type="Network",
            resource_id=network.id,
            tenant_id=tenant_id,
            detail=detail,
        )
    await session.flush()


def refuse_network_admin(principal: Principal) -> None:
    if principal.tenant_id is None:
        raise Forbidden("sign in to a tenant for this")


async def set_primary_care(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, primary: bool
) -> PrimaryCareOut:
    """A clinic marks (or unmarks) itself as the patient's primary care: where transition-of-care tasks go."""
    principal.require("patients", "write")
    patient = await require_patient(session, principal, patient_id, "patient.primary_care")
    tenant = await session.get(Tenant, principal.tenant_id)
    assert tenant is not None
    if primary and tenant.kind != "clinic":
        raise InvalidInput("only a clinic can be a patient's primary care", field="primary_care")
    link = await link_for(session, principal, patient)
    if primary:
        # One primary care clinic per person: marking here unmarks any other.
        others = await session.scalars(
            select(PatientLink).where(
                PatientLink.person_id == link.person_id, PatientLink.id != link.id, PatientLink.primary_care.is_(True)
            )
        )
        for other in list(others):
            other.primary_care = False
            # The clinic that held the flag learns that transition-of-care tasks no longer come to it.
            async with other_tenant_session(session, other.tenant_id) as theirs:
                audit.record(
                    theirs,
                    principal.actor,
                    action="patient.primary_care",
                    resource_type="Patient",
                    resource_id=other.patient_id,
                    patient_id=other.patient_id,
                    reason="another clinic of the network is now the patient's primary care",
                    detail={"primary_care": False},
                )
    link.primary_care = primary
    audit.record(
        session,
        principal.actor,
        action="patient.primary_care",
        resource_type="Patient",
        resource_id=patient.id,
        patient_id=patient.id,
        detail={"primary_care": primary},
    )
    await session.flush()
    return PrimaryCareOut(patient_id=patient.id, primary_care=link.primary_care)


async def get_link_systems(session: AsyncSession, principal: Principal) -> LinkSystems:
    principal.require("consent_default", "read")
    network = await the_network(session)
    return LinkSystems(systems=list(network.link_systems or []))


async def set_link_systems(session: AsyncSession, principal: Principal, data: LinkSystems) -> LinkSystems:
    """Network administrators choose which identifier systems link records automatically. Records are (re)linked
    under the new list when they are next created or changed; links made before stay until undone."""
    principal.require("consent_default", "write")
    systems = list(dict.fromkeys(data.systems))
    for index, system in enumerate(systems):
        if is_mrn_system(system):
            raise InvalidInput("a tenant's MRN system never links records across tenants", field=f"systems[{index}]")
    async with network_wide(session, "network link systems: every tenant's linking keys and audit log"):
        network = await the_network(session)
        before = list(network.link_systems or [])
        network.link_systems = systems
        await _refresh_link_keys(session, network.id, systems)
        detail = {"from": before, "to": systems}
        await audit_in_every_tenant(session, principal, network, "network.link_systems", detail)
        return LinkSystems(systems=systems)


async def _refresh_link_keys(session: AsyncSession, network_id: uuid.UUID, systems: list[str]) -> None:
    """Keep every record's linking keys in step with the network's systems (network administrators act in network
    scope). Records already linked stay linked; records created or changed from now on link under the new keys."""
    tenant_ids = select(Tenant.id).where(Tenant.network_id == network_id)
    await session.execute(
        delete(PatientLinkKey).where(PatientLinkKey.tenant_id.in_(tenant_ids), PatientLinkKey.system.not_in(systems))
    )
    key = PatientLinkKey
    held = {
        tuple(row)
        for row in await session.execute(
            select(key.tenant_id, key.patient_id, key.system, key.value).where(key.tenant_id.in_(tenant_ids))
        )
    }
    ident = PatientIdentifier
    for row in await session.execute(
        select(ident.tenant_id, ident.patient_id, ident.system, ident.value).where(
            ident.tenant_id.in_(tenant_ids), ident.system.in_(systems)
        )
    ):
        if tuple(row) not in held:
            session.add(PatientLinkKey(tenant_id=row[0], patient_id=row[1], system=row[2], value=row[3]))
