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

import re
import uuid
from dataclasses import dataclass
from datetime import date

import jellyfish
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit
from core.audit import Actor
from core.consent.link_schemas import Agreement, FieldAgreement, LinkOut, LinkSuggestion, LinkSuggestions
from core.consent.models import BreakGlass, Consent, LinkExclusion, PatientLink, PatientLinkKey, Person
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.patients.models import Patient, PatientIdentifier
from core.principal import Principal
from core.records import get_or_404
from tenants.models import Network, Tenant

RESOURCE = "PatientLink"
# A candidate is suggested when its score reaches THRESHOLD and its names are at least NAME_FLOOR alike: a
# matching birth date, sex and postal code alone describe many people.
THRESHOLD = 0.8
NAME_FLOOR = 0.85
# Weights of the fields in the score (they add up to 1); a partial birth date (day and month swapped, one digit
# off) counts PARTIAL_BIRTH_DATE of its weight, a postal code missing on one side half of its weight.
WEIGHTS = {"name": 0.45, "birth_date": 0.30, "sex": 0.10, "postal_code": 0.15}
PARTIAL_BIRTH_DATE = 0.6
# At most this many candidate records are compared for one suggestion request (the blocking keeps it small).
BLOCK_LIMIT = 1000
MAX_SUGGESTIONS = 10


def name_key(value: str) -> str:
    """A name as compared: lower case, single spaces."""
    return " ".join(value.lower().split())


def _postal_code(patient: Patient) -> str | None:
    code = (patient.address or {}).get("postal_code")
    return str(code).replace(" ", "").upper()[:20] if code else None


async def link_of(session: AsyncSession, tenant_id: uuid.UUID, patient_id: uuid.UUID) -> PatientLink | None:
    return await session.scalar(
        select(PatientLink).where(PatientLink.tenant_id == tenant_id, PatientLink.patient_id == patient_id)
    )


async def sync_patient(session: AsyncSession, patient: Patient, actor: Actor) -> PatientLink:
    """Keep the record's link (keys and person) in step with the record; call after a create or an update.

    A record without a person gets one: the person of another tenant's record sharing an identifier (when exactly
    one such person exists and no administrator excluded it), otherwise a new person.
    """
    await session.flush()
    tenant_id = patient.tenant_id
    link = await link_of(session, tenant_id, patient.id)
    network_id, systems = (
        await session.execute(
            select(Network.id, Network.link_systems)
            .join(Tenant, Tenant.network_id == Network.id)
            .where(Tenant.id == tenant_id)
        )
    ).one()
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


# --- Demographic matching -------------------------------------------------------------------------------------

_NOT_LETTERS = re.compile(r"[^\w ]+")


def _plain(key: str) -> str:
    """A name key without punctuation (O'Brien, Smith-Jones compare as obrien, smithjones)."""
    return " ".join(_NOT_LETTERS.sub("", key).split())


def _part_similarity(a: str, b: str) -> float:
    """How alike two name parts are: Jaro-Winkler, raised to 0.9 when they sound alike (metaphone)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    score = jellyfish.jaro_winkler_similarity(a, b)
    if jellyfish.metaphone(a) == jellyfish.metaphone(b):
        score = max(score, 0.9)
    return score


def name_similarity(given: str, family: str, other_given: str, other_family: str) -> float:
    """How alike two names are (0..1): the better of the straight and the swapped given/family comparison."""
    g, f, og, of = (_plain(k) for k in (given, family, other_given, other_family))
    straight = (_part_similarity(g, og) + _part_similarity(f, of)) / 2
    swapped = (_part_similarity(g, of) + _part_similarity(f, og)) / 2
    return max(straight, swapped)


def _valid_date(year: int, month: int, day: int) -> date | None:
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    return found if 1880 <= found.year and found <= date.today() else None


def birth_date_variants(value: date) -> set[date]:
    """The near misses of a birth date a typist makes: day and month swapped, or one digit of YYYYMMDD wrong."""
    variants: set[date] = set()
    swapped = _valid_date(value.year, value.day, value.month)
    if swapped is not None:
        variants.add(swapped)
    digits = value.strftime("%Y%m%d")
    for position in range(len(digits)):
        for digit in "0123456789":
            if digit == digits[position]:
                continue
            text = digits[:position] + digit + digits[position + 1 :]
            found = _valid_date(int(text[:4]), int(text[4:6]), int(text[6:]))
            if found is not None:
                variants.add(found)
    variants.discard(value)
    return variants


@dataclass(frozen=True)
class Keys:
    """The demographic keys of one record, as compared."""

    given: str
    family: str
    birth_date: date
    sex: str
    postal_code: str | None

    @classmethod
    def of(cls, link: PatientLink) -> Keys:
        return cls(link.given_key, link.family_key, link.birth_date, link.sex, link.postal_code)


def compare(mine: Keys, theirs: Keys) -> tuple[float, FieldAgreement]:
    """The match score (0..1) of two records and which fields agree; 0 when the names are not alike."""
    names = name_similarity(mine.given, mine.family, theirs.given, theirs.family)
    name: Agreement = "same" if names == 1.0 else "similar" if names >= NAME_FLOOR else "different"
    birth: Agreement
    if mine.birth_date == theirs.birth_date:
        birth, birth_score = "same", 1.0
    elif theirs.birth_date in birth_date_variants(mine.birth_date):
        birth, birth_score = "similar", PARTIAL_BIRTH_DATE
    else:
        birth, birth_score = "different", 0.0
    sex: Agreement
    if "unknown" in (mine.sex, theirs.sex):
        sex, sex_score = "unknown", 0.5
    else:
        sex, sex_score = ("same", 1.0) if mine.sex == theirs.sex else ("different", 0.0)
    postal: Agreement
    if not mine.postal_code or not theirs.postal_code:
        postal, postal_score = "unknown", 0.5
    else:
        postal, postal_score = ("same", 1.0) if mine.postal_code == theirs.postal_code else ("different", 0.0)
    agreement = FieldAgreement(name=name, birth_date=birth, sex=sex, postal_code=postal)
    if names < NAME_FLOOR:
        return 0.0, agreement
    score = (
        WEIGHTS["name"] * names
        + WEIGHTS["birth_date"] * birth_score
        + WEIGHTS["sex"] * sex_score
        + WEIGHTS["postal_code"] * postal_score
    )
    return round(score, 3), agreement


async def _network_of(session: AsyncSession, link: PatientLink) -> uuid.UUID | None:
    return await session.scalar(select(Person.network_id).where(Person.id == link.person_id))


async def suggestions_for(session: AsyncSession, link: PatientLink) -> list[LinkSuggestion]:
    """The persons of other tenants' records that may be this record's person, best first.

    Only records found by the blocking keys are compared (the same birth date or one of its near misses, or the
    same given or family name in either order), never the whole network. A person already holding a record of
    this tenant (this record's own person included) or excluded by an administrator's unlink is not suggested.
    """
    network_id = await _network_of(session, link)
    own_tenant = aliased(PatientLink)
    dates = {link.birth_date, *birth_date_variants(link.birth_date)}
    names = {k for k in (link.given_key, link.family_key) if k}
    blocks = [PatientLink.birth_date.in_(sorted(dates))]
    if names:
        blocks += [PatientLink.family_key.in_(sorted(names)), PatientLink.given_key.in_(sorted(names))]
    excluded = select(LinkExclusion.person_id).where(
        LinkExclusion.tenant_id == link.tenant_id, LinkExclusion.patient_id == link.patient_id
    )
    rows = await session.scalars(
        select(PatientLink)
        .join(Person, Person.id == PatientLink.person_id)
        .where(
            Person.network_id == network_id,
            PatientLink.tenant_id != link.tenant_id,
            PatientLink.person_id.not_in(select(own_tenant.person_id).where(own_tenant.tenant_id == link.tenant_id)),
            PatientLink.person_id.not_in(excluded),
            or_(*blocks),
        )
        .limit(BLOCK_LIMIT)
    )
    mine = Keys.of(link)
    best: dict[uuid.UUID, tuple[float, FieldAgreement]] = {}
    for candidate in rows:
        score, agreement = compare(mine, Keys.of(candidate))
        if score >= THRESHOLD and score > best.get(candidate.person_id, (0.0, agreement))[0]:
            best[candidate.person_id] = (score, agreement)
    if not best:
        return []
    counts: dict[uuid.UUID, int] = {}
    for person_id, count in await session.execute(
        select(PatientLink.person_id, func.count())
        .where(PatientLink.person_id.in_(list(best)))
        .group_by(PatientLink.person_id)
    ):
        counts[person_id] = int(count)
    found = [
        LinkSuggestion(id=person_id, score=score, agreement=agreement, records=counts.get(person_id, 0))
        for person_id, (score, agreement) in best.items()
    ]
    found.sort(key=lambda s: (-s.score, str(s.id)))
    return found[:MAX_SUGGESTIONS]


# --- Services: this record's link, suggestions, confirm, unlink ------------------------------------------------


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
    person = Person(id=uuid.uuid4(), network_id=await _network_of(session, link))
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
