"""Consents, recorded by staff or by the patient in the portal (the network default and break-the-glass have
their own modules, :mod:`core.consent.network` and :mod:`core.consent.break_glass`).

A consent belongs to the network-level person; a tenant sees the consents it recorded (another tenant's consent
about the same person would tell it where else the person is cared for). The patient sees all of their own.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.consent import linking
from core.consent.categories import PART2
from core.consent.linking import link_for
from core.consent.models import Consent, PatientLink
from core.consent.network import network_of, tenant_names
from core.consent.schemas import ConsentCreate, ConsentIdentifier, ConsentOut, ConsentRevoke, GranteeOut
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.inputs import to_utc
from core.patients.service import require_patient
from core.principal import Principal
from core.records import not_found
from tenants.models import Tenant

RESOURCE = "Consent"


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


async def _names_for(session: AsyncSession, consents: list[Consent]) -> dict[uuid.UUID, str]:
    return await tenant_names(session, {c.grantee_tenant_id for c in consents if c.grantee_tenant_id})


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
        raise not_found(
            session, principal, consent_id, action=action, resource_type=RESOURCE, detail="consent not found"
        )
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
