"""One person, many records: linking tenant-local patient records to the network-level person.

Every patient record has a :class:`PatientLink` to a person. When a record is created or its identifiers change,
it joins the person of any other tenant's record that shares one of its identifiers (network id, insurance member
id, ...), unless an administrator undid that link before. Demographic matches are only suggestions that a tenant
administrator confirms: names compared with Jaro-Winkler (typos and given/family order forgiven), birth date, sex
and postal code. A suggestion never shows another tenant's values, nor which tenants hold the person's records
(a specialised clinic's name alone would disclose care): only the person's id, a score, which fields agree and how
many records the person has. A confirmed link and an unlink are audited; an unlink is remembered so that automatic
linking never joins the record back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import Actor
from core.consent.link_schemas import LinkOut, LinkSuggestions
from core.consent.matching import network_id_of, suggestions_for
from core.consent.models import BreakGlass, Consent, LinkExclusion, PatientLink, PatientLinkKey, Person
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.patients.models import Patient, PatientIdentifier
from core.principal import Principal
from core.records import get_or_404
from tenants.isolation import append, prebuilt
from tenants.models import Network, Tenant

RESOURCE = "PatientLink"


def name_key(value: str) -> str:
    """A name as compared: lower case, single spaces."""
    return " ".join(value.lower().split())


def _postal_code(patient: Patient) -> str | None:
    return _postal_code_of(patient.address)


def _postal_code_of(address: Mapping[str, Any] | None) -> str | None:
    code = (address or {}).get("postal_code")
    return str(code).replace(" ", "").upper()[:20] if code else None


async def link_of(session: AsyncSession, tenant_id: uuid.UUID, patient_id: uuid.UUID) -> PatientLink | None:
    return await session.scalar(
        select(PatientLink).where(PatientLink.tenant_id == tenant_id, PatientLink.patient_id == patient_id)
    )


_NETWORK_OF = prebuilt(
    select(Network.id, Network.link_systems)
    .join(Tenant, Tenant.network_id == Network.id)
    .where(Tenant.id == bindparam("tenant_id"))
)


async def link_new(
    session: AsyncSession, actor: Actor, patient: Mapping[str, Any], identifiers: list[tuple[str, str]]
) -> None:
    """Give a record created in this transaction its link: what :func:`sync_patient` does, without reading back
    what a new record cannot have yet (a link, stored keys). ``patient`` is the record's row as appended
    (``tenants.isolation.append``) and ``identifiers`` its (system, value) pairs.

    The person, the link and its keys are appended as rows after the record's, so that they are written after it,
    in the order their foreign keys need.
    """
    tenant_id, patient_id = patient["tenant_id"], patient["id"]
    # A feed creates many records in one transaction: their tenant's network is read once for them.
    cache: dict[uuid.UUID, tuple[Any, Any]] = session.info.setdefault("carehub.network_of", {})
    if tenant_id not in cache:
        cache[tenant_id] = tuple((await session.execute(_NETWORK_OF, {"tenant_id": tenant_id})).one())
    network_id, systems = cache[tenant_id]
    linking_systems = set(systems or [])
    keys = sorted({(system, value) for system, value in identifiers if system in linking_systems})
    person_id = await _shared_person(session, network_id, tenant_id, patient_id, keys)
    method = "new" if person_id is None else "identifier"
    now = utcnow()
    if person_id is None:
        person_id = uuid.uuid4()
        append(session, Person, {"network_id": network_id, "created_at": now, "id": person_id})
    link = {
        "tenant_id": tenant_id,
        "patient_id": patient_id,
        "person_id": person_id,
        "method": method,
        "linked_by": None,
        "linked_at": now,
        "given_key": name_key(patient["given_name"]),
        "family_key": name_key(patient["family_name"]),
        "birth_date": patient["birth_date"],
        "sex": patient["sex"],
        "postal_code": _postal_code_of(patient["address"]),
        "primary_care": False,
        "id": uuid.uuid4(),
    }
    append(session, PatientLink, link)
    for system, value in keys:
        row = {"tenant_id": tenant_id, "patient_id": patient_id, "system": system, "value": value}
        append(session, PatientLinkKey, row | {"id": uuid.uuid4()})
    if method == "identifier":
        _audit_identifier_link(session, actor, patient_id, person_id)


async def sync_patient(session: AsyncSession, patient: Patient, actor: Actor) -> PatientLink:
    """Keep the record's link (keys and person) in step with the record; call after a create or an update.

    A record without a person gets one: the person of another tenant's record sharing an identifier (when exactly
    one such person exists and no administrator excluded it), otherwise a new person.
    """
    await session.flush()
    tenant_id = patient.tenant_id
    link = await link_of(session, tenant_id, patient.id)
    network_id, systems = (await session.execute(_NETWORK_OF, {"tenant_id": tenant_id})).one()
    # Only identifiers of the network's linking systems link records; a tenant's own systems never do.
    rows = await session.execute(
        select(PatientIdentifier.system, PatientIdentifier.value).where(
            PatientIdentifier.patient_id == patient.id, PatientIdentifier.system.in_(list(systems or []))
        )
    )
    keys = sorted({(system, value) for system, value in rows})
    # A record without a link has no keys yet (they are written here): nothing to read back.
    held = (
        {
            (k.system, k.value): k
            for k in await session.scalars(
                select(PatientLinkKey).where(
                    PatientLinkKey.tenant_id == tenant_id, PatientLinkKey.patient_id == patient.id
                )
            )
        }
        if link is not None
        else {}
    )
    for key, row in held.items():
        if key not in keys:
            await session.delete(row)
    for system, value in keys:
        if (system, value) not in held:
            session.add(PatientLinkKey(tenant_id=tenant_id, patient_id=patient.id, system=system, value=value))
    if link is None:
        link = PatientLink(tenant_id=tenant_id, patient_id=patient.id, method="new")
        person_id = await _shared_person(session, network_id, tenant_id, patient.id, keys)
        if person_id is None:
            person = Person(id=uuid.uuid4(), network_id=network_id)
            session.add(person)
            await session.flush()  # before the link that refers to it (no relationship orders the two)
            person_id = person.id
        else:
            link.method = "identifier"
        link.person_id = person_id
        session.add(link)
        if link.method == "identifier":
            _audit_identifier_link(session, actor, patient.id, person_id)
    elif link.method == "new" and keys:
        person_id = await _shared_person(session, network_id, tenant_id, patient.id, keys)
        if person_id is not None and person_id != link.person_id and not await _others_on(session, link):
            await move_record(session, link, person_id)
            link.method = "identifier"
            _audit_identifier_link(session, actor, patient.id, person_id)
    link.given_key = name_key(patient.given_name)
    link.family_key = name_key(patient.family_name)
    link.birth_date = patient.birth_date
    link.sex = patient.sex
    link.postal_code = _postal_code(patient)
    await session.flush()
    return link


async def link_for(session: AsyncSession, principal: Principal, patient: Patient) -> PatientLink:
    """The record's link to its person (made now for a record that has none yet)."""
    link = await link_of(session, patient.tenant_id, patient.id)
    if link is None:
        link = await sync_patient(session, patient, principal.actor)
    return link


def _audit_identifier_link(session: AsyncSession, actor: Actor, patient_id: uuid.UUID, person_id: uuid.UUID) -> None:
    audit.record(
        session,
        actor,
        action="patient.link",
        resource_type="PatientLink",
        resource_id=patient_id,
        patient_id=patient_id,
        reason="shares an identifier with a record of another tenant",
        detail={"person_id": str(person_id), "method": "identifier"},
    )


async def move_record(session: AsyncSession, link: PatientLink, person_id: uuid.UUID) -> int:
    """Move a record to another person, with what belongs to it: the consents recorded through this record follow
    it (they are that human's), and emergency accesses opened from it end (they were opened for the old person).

    Returns how many consents moved. Consents recorded through other tenants' records stay with their person.
    """
    link.person_id = person_id
    moved = await session.execute(
        update(Consent)
        .where(Consent.recorded_tenant_id == link.tenant_id, Consent.recorded_patient_id == link.patient_id)
        .values(person_id=person_id)
    )
    now = utcnow()
    await session.execute(
        update(BreakGlass)
        .where(
            BreakGlass.tenant_id == link.tenant_id,
            BreakGlass.patient_id == link.patient_id,
            BreakGlass.expires_at > now,
        )
        .values(expires_at=now)
    )
    return int(getattr(moved, "rowcount", 0) or 0)


async def _others_on(session: AsyncSession, link: PatientLink) -> bool:
    """Whether other records share ``link``'s person (then it is not moved automatically)."""
    found = await session.scalar(
        select(PatientLink.id).where(PatientLink.person_id == link.person_id, PatientLink.id != link.id).limit(1)
    )
    return found is not None


async def _shared_person(
    session: AsyncSession,
    network_id: uuid.UUID | None,
    tenant_id: uuid.UUID,
    patient_id: uuid.UUID,
    keys: list[tuple[str, str]],
) -> uuid.UUID | None:
    """The one person of the network that other tenants' records sharing an identifier belong to (none if zero or
    several). Another network's records are never joined: a network is the boundary of sharing."""
    if not keys:
        return None
    persons: set[uuid.UUID] = set()
    for system, value in keys:
        rows = await session.scalars(
            select(PatientLink.person_id)
            .join(
                PatientLinkKey,
                (PatientLinkKey.tenant_id == PatientLink.tenant_id)
                & (PatientLinkKey.patient_id == PatientLink.patient_id),
            )
            .join(Person, Person.id == PatientLink.person_id)
            .where(
                PatientLinkKey.system == system,
                PatientLinkKey.value == value,
                PatientLink.tenant_id != tenant_id,
                Person.network_id == network_id,
            )
        )
        persons.update(rows)
    excluded = set(
        await session.scalars(
            select(LinkExclusion.person_id).where(
                LinkExclusion.tenant_id == tenant_id, LinkExclusion.patient_id == patient_id
            )
        )
    )
    persons -= excluded
    return persons.pop() if len(persons) == 1 else None


async def _record_link(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, action: str, *, for_update: bool = False
) -> tuple[Patient, PatientLink]:
    """The caller's tenant's patient (404, audited, when absent or another tenant's) and its link."""
    patient = await get_or_404(
        session, principal, Patient, patient_id, action=action, resource_type="Patient", detail="patient not found"
    )
    query = select(PatientLink).where(PatientLink.tenant_id == patient.tenant_id, PatientLink.patient_id == patient.id)
    link = await session.scalar(query.with_for_update() if for_update else query)
    if link is None:
        link = await sync_patient(session, patient, principal.actor)
    return patient, link


async def _other_records(session: AsyncSession, link: PatientLink) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(PatientLink)
        .where(PatientLink.person_id == link.person_id, PatientLink.id != link.id)
    )
    return int(count or 0)


async def _link_out(session: AsyncSession, link: PatientLink) -> LinkOut:
    return LinkOut(
        patient_id=link.patient_id,
        person_id=link.person_id,
        method=link.method,
        linked_at=link.linked_at,
        other_records=await _other_records(session, link),
    )


async def read_link(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> LinkOut:
    """This record's person, how it was linked, and how many other records (of any tenant) it has."""
    principal.require("links", "read")
    _, link = await _record_link(session, principal, patient_id, "patient.link.read")
    return await _link_out(session, link)


async def suggest(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> LinkSuggestions:
    """Demographic match suggestions for this record (audited: it looks across the network)."""
    principal.require("links", "read")
    patient, link = await _record_link(session, principal, patient_id, "patient.link_suggestions")
    found = await suggestions_for(session, link)
    audit.record(
        session,
        principal.actor,
        action="patient.link_suggestions",
        resource_type=RESOURCE,
        resource_id=patient.id,
        patient_id=patient.id,
        detail={"suggested": [str(s.id) for s in found]},
    )
    return LinkSuggestions(items=found)


async def _relink(
    session: AsyncSession,
    principal: Principal,
    link: PatientLink,
    person_id: uuid.UUID,
    *,
    method: str,
    action: str,
    reason: str,
    score: float | None = None,
) -> None:
    """An administrator's move of a record to ``person_id`` (confirmed match or unlink), audited with both persons."""
    old = link.person_id
    consents = await move_record(session, link, person_id)
    link.method = method
    link.linked_by = principal.user_id
    link.linked_at = utcnow()
    detail: dict[str, object] = {
        "old_person_id": str(old),
        "person_id": str(person_id),
        "method": link.method,
        "consents_moved": consents,
    }
    if score is not None:
        detail["score"] = score
    audit.record(
        session,
        principal.actor,
        action=action,
        resource_type=RESOURCE,
        resource_id=link.patient_id,
        patient_id=link.patient_id,
        reason=reason,
        detail=detail,
    )
    await session.flush()


async def confirm(session: AsyncSession, principal: Principal, patient_id: uuid.UUID, person_id: uuid.UUID) -> LinkOut:
    """Join this record to a person currently suggested for it; any other person id is absent (404)."""
    principal.require("links", "write")
    _, link = await _record_link(session, principal, patient_id, "patient.link", for_update=True)
    suggested = {s.id: s for s in await suggestions_for(session, link)}
    if person_id not in suggested:
        raise NotFound("no such suggestion for this patient", field="person_id")
    await _relink(
        session,
        principal,
        link,
        person_id,
        method="confirmed",
        action="patient.link",
        reason="an administrator confirmed a suggested match",
        score=suggested[person_id].score,
    )
    return await _link_out(session, link)


async def unlink(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> LinkOut:
    """Undo this record's link: it gets a person of its own, and is never joined back to the old one automatically.

    A record that is already the only one of its person has nothing to undo (409).
    """
    principal.require("links", "write")
    _, link = await _record_link(session, principal, patient_id, "patient.unlink", for_update=True)
    if await _other_records(session, link) == 0:
        raise Conflict("the patient's record is not linked to any other record", field="patient_id")
    old = link.person_id
    person = Person(id=uuid.uuid4(), network_id=await network_id_of(session, link))
    session.add(person)
    await session.flush()
    already = await session.scalar(
        select(LinkExclusion.id).where(
            LinkExclusion.tenant_id == link.tenant_id,
            LinkExclusion.patient_id == link.patient_id,
            LinkExclusion.person_id == old,
        )
    )
    if already is None:
        session.add(
            LinkExclusion(
                tenant_id=link.tenant_id, patient_id=link.patient_id, person_id=old, created_by=principal.user_id
            )
        )
    await _relink(
        session,
        principal,
        link,
        person.id,
        method="unlinked",
        action="patient.unlink",
        reason="an administrator undid the link",
    )
    return await _link_out(session, link)
