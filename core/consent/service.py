"""Consents (recorded by staff or by the patient in the portal), the network default, and break-the-glass.

A consent belongs to the network-level person; a tenant sees the consents it recorded (another tenant's consent
about the same person would tell it where else the person is cared for). The patient sees all of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, staff
from core.alerts.models import Alert
from core.consent import linking
from core.consent.access import BREAK_GLASS_OPEN
from core.consent.categories import (
    BREAK_GLASS_CATEGORIES,
    BREAK_GLASS_DURATION,
    PART2,
)
from core.consent.models import BreakGlass, Consent, PatientLink, PatientLinkKey
from core.consent.schemas import (
    BreakGlassCreate,
    BreakGlassOut,
    ConsentCreate,
    ConsentIdentifier,
    ConsentOut,
    ConsentRevoke,
    GranteeOut,
    LinkSystems,
    NetworkConsentDefault,
    PrimaryCareOut,
)
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.fhir.common import is_mrn_system
from core.inputs import to_utc
from core.patients.models import Patient, PatientIdentifier
from core.patients.service import require_patient
from core.principal import Principal
from tenants.context import tenant_context
from tenants.isolation import other_tenant_session
from tenants.models import Network, Tenant
from tenants.scope import network_wide

RESOURCE = "Consent"
Sessions = Callable[[], AsyncSession]


def status_at(consent: Consent, now: datetime) -> str:
    """``revoked``, ``expired`` (its period ended: compared in UTC) or ``active``."""
    if consent.status == "revoked":
        return "revoked"
    if consent.period_end is not None and consent.period_end <= now:
        return "expired"
    return "active"


def to_out(consent: Consent, patient_id: uuid.UUID | None, names: dict[uuid.UUID, str], now: datetime) -> ConsentOut:
    identifier = None
    if consent.identifier_system and consent.identifier_value:
        identifier = ConsentIdentifier(system=consent.identifier_system, value=consent.identifier_value)
    return ConsentOut(
        id=consent.id,
        patient_id=patient_id,
        decision=consent.decision,
        grantee=GranteeOut(
            kind=consent.grantee_kind,
            tenant_id=consent.grantee_tenant_id,
            tenant_name=names.get(consent.grantee_tenant_id) if consent.grantee_tenant_id else None,
        ),
        categories=list(consent.categories),
        purposes=list(consent.purposes),
        period_start=consent.period_start,
        period_end=consent.period_end,
        status=status_at(consent, now),
        source_kind=consent.source_kind,
        source_reference=consent.source_reference,
        note=consent.note,
        recorded_by=consent.recorded_by,
        recorded_at=consent.recorded_at,
        revoked_at=consent.revoked_at,
        revocation_reason=consent.revocation_reason,
        identifier=identifier,
    )


async def tenant_names(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Names of tenants of the network (a directory every tenant may know)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {t.id: t.name for t in await session.scalars(select(Tenant).where(Tenant.id.in_(wanted)))}


async def _names_for(session: AsyncSession, consents: list[Consent]) -> dict[uuid.UUID, str]:
    return await tenant_names(session, {c.grantee_tenant_id for c in consents if c.grantee_tenant_id})


async def link_for(session: AsyncSession, principal: Principal, patient: Patient) -> PatientLink:
    """The record's link to its person (made now for a record that has none yet)."""
    link = await linking.link_of(session, patient.tenant_id, patient.id)
    if link is None:
        link = await linking.sync_patient(session, patient, principal.actor)
    return link


async def network_of(session: AsyncSession, tenant_id: uuid.UUID) -> Network:
    network = await session.scalar(
        select(Network).join(Tenant, Tenant.network_id == Network.id).where(Tenant.id == tenant_id)
    )
    assert network is not None
    return network


async def _the_network(session: AsyncSession) -> Network:
    """The deployment's network (network administrators act on it, outside any tenant)."""
    network = await session.scalar(select(Network).order_by(Network.created_at).limit(1))
    if network is None:
        raise NotFound("no network")
    return network


def _require(principal: Principal, act: str) -> None:
    """Staff need the consents permission; a patient, the portal's (for their own consents only)."""
    principal.require("portal" if principal.is_patient else "consents", act)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def _check_terms(
    session: AsyncSession, recording_tenant: uuid.UUID, data: ConsentCreate
) -> tuple[datetime, datetime | None]:
    grantee = data.grantee
    if grantee.kind == "tenant":
        if grantee.tenant_id is None:
            raise InvalidInput("name the tenant the consent is for", field="grantee.tenant_id")
        if grantee.tenant_id == recording_tenant:
            raise InvalidInput(
                "a consent governs other tenants; your own tenant's staff see its records by their roles",
                field="grantee.tenant_id",
            )
        network = await network_of(session, recording_tenant)
        found = await session.scalar(
            select(Tenant.id).where(Tenant.id == grantee.tenant_id, Tenant.network_id == network.id)
        )
        if found is None:
            raise InvalidInput("no tenant of the network has this id", field="grantee.tenant_id")
    elif grantee.tenant_id is not None:
        raise InvalidInput(f"a consent for '{grantee.kind}' names no single tenant", field="grantee.tenant_id")
    if data.decision == "permit" and PART2 in data.categories and grantee.kind != "tenant":
        raise InvalidInput(
            "substance use disorder records are shared only under a consent naming the recipient tenant "
            "(42 CFR Part 2): record a separate consent for that tenant",
            field="categories",
        )
    start = to_utc(data.period_start, "period_start")
    end = to_utc(data.period_end, "period_end") if data.period_end is not None else None
    if end is not None and end <= start:
        raise InvalidInput("the period must end after it starts", field="period_end")
    return start, end


async def record(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, data: ConsentCreate, *, portal: bool = False
) -> ConsentOut:
    """Record a consent given by the patient of ``patient_id`` (staff, or the patient in the portal)."""
    if portal:
        principal.require("portal", "write")
        if principal.patient_id != patient_id:
            raise NotFound("patient not found")
        if data.source_kind != "portal":
            raise InvalidInput("a consent given in the portal has the source 'portal'", field="source_kind")
    else:
        principal.require("consents", "write")
        if data.source_kind == "portal":
            raise InvalidInput("only the patient records a consent in the portal", field="source_kind")
    patient = await require_patient(session, principal, patient_id, "consent.record", active=True)
    assert principal.tenant_id is not None
    start, end = await _check_terms(session, principal.tenant_id, data)
    if data.identifier is not None:
        taken = await session.scalar(
            select(Consent.id).where(
                Consent.recorded_tenant_id == principal.tenant_id,
                Consent.identifier_system == data.identifier.system,
                Consent.identifier_value == data.identifier.value,
            )
        )
        if taken is not None:
            raise Conflict("a consent with this identifier is already recorded", field="identifier")
    link = await link_for(session, principal, patient)
    consent = Consent(
        id=uuid.uuid4(),
        person_id=link.person_id,
        decision=data.decision,
        grantee_kind=data.grantee.kind,
        grantee_tenant_id=data.grantee.tenant_id,
        categories=_unique(list(data.categories)),
        purposes=_unique(list(data.purposes)),
        period_start=start,
        period_end=end,
        status="active",
        source_kind=data.source_kind,
        source_reference=data.source_reference,
        note=data.note,
        recorded_tenant_id=principal.tenant_id,
        recorded_patient_id=patient.id,
        recorded_by=principal.user_id,
        recorded_at=utcnow(),
        identifier_system=data.identifier.system if data.identifier else None,
        identifier_value=data.identifier.value if data.identifier else None,
    )
    session.add(consent)
    audit.record(
        session,
        principal.actor,
        action="consent.record",
        resource_type=RESOURCE,
        resource_id=consent.id,
        patient_id=patient.id,
        detail={
            "decision": consent.decision,
            "grantee": {"kind": consent.grantee_kind, "tenant_id": str(consent.grantee_tenant_id or "") or None},
            "categories": consent.categories,
            "purposes": consent.purposes,
            "source_kind": consent.source_kind,
        },
    )
    await session.flush()
    return to_out(consent, patient.id, await _names_for(session, [consent]), utcnow())


async def list_for_patient(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> list[ConsentOut]:
    """The consents of this patient's person that this tenant recorded, newest first."""
    principal.require("consents", "read")
    patient = await require_patient(session, principal, patient_id, "consent.list")
    link = await link_for(session, principal, patient)
    consents = list(
        await session.scalars(
            select(Consent)
            .where(Consent.person_id == link.person_id, Consent.recorded_tenant_id == principal.tenant_id)
            .order_by(Consent.recorded_at.desc(), Consent.id)
        )
    )
    audit.record(session, principal.actor, action="consent.list", resource_type=RESOURCE, patient_id=patient.id)
    names = await _names_for(session, consents)
    now = utcnow()
    return [to_out(c, patient.id, names, now) for c in consents]


async def _own_consent(session: AsyncSession, principal: Principal, consent_id: uuid.UUID, action: str) -> Consent:
    """A consent this tenant recorded (another tenant's is absent), or, for a patient, one of their own."""
    consent = await session.get(Consent, consent_id)
    visible = consent is not None and (
        consent.recorded_tenant_id == principal.tenant_id
        if not principal.is_patient
        else await _is_patients(session, principal, consent)
    )
    if consent is None or not visible:
        audit.record_failure(
            session, principal.actor, action=action, resource_type=RESOURCE, resource_id=consent_id, outcome="not_found"
        )
        raise NotFound("consent not found")
    return consent


async def _is_patients(session: AsyncSession, principal: Principal, consent: Consent) -> bool:
    assert principal.patient_id is not None and principal.tenant_id is not None
    link = await linking.link_of(session, principal.tenant_id, principal.patient_id)
    return link is not None and link.person_id == consent.person_id


async def _record_patient(session: AsyncSession, principal: Principal, consent: Consent) -> uuid.UUID | None:
    """This tenant's record of the consent's person (for the answer and the audit event)."""
    if consent.recorded_tenant_id == principal.tenant_id:
        return consent.recorded_patient_id
    return await session.scalar(
        select(PatientLink.patient_id).where(
            PatientLink.person_id == consent.person_id, PatientLink.tenant_id == principal.tenant_id
        )
    )


async def read(session: AsyncSession, principal: Principal, consent_id: uuid.UUID) -> ConsentOut:
    _require(principal, "read")
    consent = await _own_consent(session, principal, consent_id, "consent.read")
    patient_id = await _record_patient(session, principal, consent)
    audit.record(
        session,
        principal.actor,
        action="consent.read",
        resource_type=RESOURCE,
        resource_id=consent.id,
        patient_id=patient_id,
    )
    return to_out(consent, patient_id, await _names_for(session, [consent]), utcnow())


async def revoke(session: AsyncSession, principal: Principal, consent_id: uuid.UUID, data: ConsentRevoke) -> ConsentOut:
    """Revoke a consent: access it allowed stops on the very next request (decisions read consents fresh)."""
    _require(principal, "write")
    consent = await _own_consent(session, principal, consent_id, "consent.revoke")
    if consent.status == "revoked":
        raise Conflict("the consent is already revoked", field="status")
    now = utcnow()
    consent.status = "revoked"
    consent.revoked_at = now
    consent.revoked_by = principal.user_id
    consent.revocation_reason = data.reason
    patient_id = await _record_patient(session, principal, consent)
    audit.record(
        session,
        principal.actor,
        action="consent.revoke",
        resource_type=RESOURCE,
        resource_id=consent.id,
        patient_id=patient_id,
        reason=data.reason,
    )
    await session.flush()
    return to_out(consent, patient_id, await _names_for(session, [consent]), now)


async def list_for_portal(session: AsyncSession, principal: Principal) -> list[ConsentOut]:
    """Every consent of the signed-in patient's person, wherever it was recorded, newest first."""
    principal.require("portal", "read")
    assert principal.patient_id is not None and principal.tenant_id is not None
    link = await linking.link_of(session, principal.tenant_id, principal.patient_id)
    if link is None:
        return []
    consents = list(
        await session.scalars(
            select(Consent).where(Consent.person_id == link.person_id).order_by(Consent.recorded_at.desc(), Consent.id)
        )
    )
    names = await _names_for(session, consents)
    now = utcnow()
    return [to_out(c, principal.patient_id, names, now) for c in consents]


async def get_network_default(session: AsyncSession, principal: Principal) -> NetworkConsentDefault:
    principal.require("consent_default", "read")
    network = await _the_network(session)
    return msgspec.convert({"consent_default": network.consent_default}, NetworkConsentDefault)


async def set_network_default(
    session: AsyncSession, principal: Principal, data: NetworkConsentDefault
) -> NetworkConsentDefault:
    """The network administrators choose what crosses tenants without a consent (opt-in: nothing)."""
    principal.require("consent_default", "write")
    async with network_wide(session, "network consent default: written in every tenant's audit log"):
        network = await _the_network(session)
        before = network.consent_default
        network.consent_default = data.consent_default
        # The change concerns every tenant's patients: it is written in every tenant's audit log (network scope).
        for tenant_id in await session.scalars(select(Tenant.id).where(Tenant.network_id == network.id)):
            audit.record(
                session,
                principal.actor,
                action="network.consent_default",
                resource_type="Network",
                resource_id=network.id,
                tenant_id=tenant_id,
                detail={"from": before, "to": data.consent_default},
            )
        await session.flush()
        return msgspec.convert({"consent_default": network.consent_default}, NetworkConsentDefault)


async def open_break_glass(
    session: AsyncSession, sessions: Sessions, principal: Principal, patient_id: uuid.UUID, data: BreakGlassCreate
) -> BreakGlassOut:
    """Open emergency access to the other tenants' records of this patient's person, without consent.

    Time-boxed (4 hours), limited to treatment categories, for this clinician only. Flagged in the audit log of
    the requesting tenant and of every tenant holding a record of the person, whose privacy officers (or, without
    one, administrators) get an alert to review it. While one is open, another is refused.
    """
    # The record first: another tenant's patient answers 404 whatever the caller's role (as absent ones do).
    patient = await require_patient(session, principal, patient_id, "break_glass.open")
    principal.require("break_glass", "write")
    assert principal.tenant_id is not None
    link = await link_for(session, principal, patient)
    now = utcnow()
    open_grant = await session.scalar(
        select(BreakGlass).where(
            BreakGlass.person_id == link.person_id,
            BreakGlass.tenant_id == principal.tenant_id,
            BreakGlass.user_id == principal.user_id,
            BreakGlass.expires_at > now,
        )
    )
    if open_grant is not None:
        raise Conflict(f"your emergency access to this patient is open until {open_grant.expires_at.isoformat()}")
    grant = BreakGlass(
        id=uuid.uuid4(),
        person_id=link.person_id,
        tenant_id=principal.tenant_id,
        patient_id=patient.id,
        user_id=principal.user_id,
        reason=data.reason,
        opened_at=now,
        expires_at=now + BREAK_GLASS_DURATION,
    )
    detail = {
        "flag": "break_the_glass",
        "break_glass_id": str(grant.id),
        "expires_at": grant.expires_at.isoformat(),
        "categories": sorted(BREAK_GLASS_CATEGORIES),
    }
    others = list(
        await session.execute(
            select(PatientLink.tenant_id, PatientLink.patient_id).where(
                PatientLink.person_id == link.person_id, PatientLink.tenant_id != principal.tenant_id
            )
        )
    )
    requester = await session.get(Tenant, principal.tenant_id)
    assert requester is not None
    # Each source tenant is told first, in its own context and transaction (its audit log, its privacy
    # officers' inboxes); this request's own writes follow (SQLite allows one writer at a time).
    for tenant_id, their_patient in others:
        with tenant_context(tenant_id):
            async with sessions() as other, other.begin():
                audit.record(
                    other,
                    principal.actor,
                    action=BREAK_GLASS_OPEN,
                    resource_type="BreakGlass",
                    resource_id=grant.id,
                    patient_id=their_patient,
                    reason=data.reason,
                    detail={
                        **detail,
                        "direction": "inbound",
                        "requesting_tenant_id": str(principal.tenant_id),
                        "requesting_tenant_name": requester.name,
                        "requesting_user": principal.full_name,
                    },
                )
                for user_id in await staff.holding(other, "privacy_officer", "tenant_admin"):
                    other.add(
                        Alert(
                            user_id=user_id,
                            patient_id=their_patient,
                            kind="break_glass",
                            severity="warning",
                            title=f"Emergency access by {requester.name} to review",
                            body=(
                                f"{principal.full_name} ({requester.name}) opened emergency access to this patient's "
                                f"records until {grant.expires_at.isoformat()}. Reason given: {data.reason}"
                            ),
                            source_event_id=grant.id,
                            subject_type="BreakGlass",
                            subject_id=grant.id,
                        )
                    )
    session.add(grant)
    audit.record(
        session,
        principal.actor,
        action=BREAK_GLASS_OPEN,
        resource_type="BreakGlass",
        resource_id=grant.id,
        patient_id=patient.id,
        reason=data.reason,
        detail={**detail, "direction": "outbound"},
    )
    await session.flush()
    return BreakGlassOut(
        id=grant.id,
        patient_id=patient.id,
        reason=grant.reason,
        opened_at=grant.opened_at,
        expires_at=grant.expires_at,
        categories=sorted(BREAK_GLASS_CATEGORIES),
    )


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
    network = await _the_network(session)
    return LinkSystems(systems=list(network.link_systems or []))


async def set_link_systems(session: AsyncSession, principal: Principal, data: LinkSystems) -> LinkSystems:
    """Network administrators choose which identifier systems link records automatically. Records are (re)linked
    under the new list when they are next created or changed; links made before stay until undone."""
    principal.require("consent_default", "write")
    async with network_wide(session, "network link systems: every tenant's linking keys and audit log"):
        network = await _the_network(session)
        systems = list(dict.fromkeys(data.systems))
        for index, system in enumerate(systems):
            if is_mrn_system(system):
                raise InvalidInput(
                    "a tenant's MRN system never links records across tenants", field=f"systems[{index}]"
                )
        before = list(network.link_systems or [])
        network.link_systems = systems
        await _refresh_link_keys(session, network.id, systems)
        for tenant_id in await session.scalars(select(Tenant.id).where(Tenant.network_id == network.id)):
            audit.record(
                session,
                principal.actor,
                action="network.link_systems",
                resource_type="Network",
                resource_id=network.id,
                tenant_id=tenant_id,
                detail={"from": before, "to": systems},
            )
        await session.flush()
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
