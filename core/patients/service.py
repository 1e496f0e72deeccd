"""Patient records within the caller's tenant. Every read and write is audited in its transaction."""

from __future__ import annotations

import uuid
from datetime import date
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Integer, Select, String, bindparam, func, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs, outbox, records
from core.consent import linking
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.patients.models import Patient, PatientIdentifier
from core.patients.schemas import Address, Identifier, PatientCreate, PatientOut, PatientUpdate
from core.principal import Principal
from core.records import Records
from tenants.isolation import append, plain_rows, prebuilt

RESOURCE = "Patient"


def to_out(patient: Patient | SimpleNamespace) -> PatientOut:
    """A patient's output, from its record or from its values as attributes (a new record's row, a read's rows)."""
    return PatientOut(
        id=patient.id,
        mrn=patient.mrn,
        given_name=patient.given_name,
        family_name=patient.family_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        phone=patient.phone,
        email=patient.email,
        address=msgspec.convert(patient.address, Address) if patient.address else None,
        language=patient.language,
        identifiers=[Identifier(system=i.system, value=i.value) for i in patient.identifiers],
        active=patient.active,
        created_at=patient.created_at,
        updated_at=patient.updated_at,
    )


PATIENTS = Records(
    model=Patient,
    resource_type=RESOURCE,
    permission="patients",
    not_found="patient not found",
    shape=to_out,
    patient_of=lambda patient: patient.id,
)


def _check_birth_date(birth_date: date) -> None:
    if birth_date > date.today():
        raise InvalidInput("birth_date is in the future", field="birth_date")
    if birth_date.year < 1880:
        raise InvalidInput("birth_date is before 1880", field="birth_date")


def _check_identifiers(identifiers: list[Identifier]) -> None:
    seen: set[tuple[str, str]] = set()
    for index, ident in enumerate(identifiers):
        key = (ident.system, ident.value)
        if key in seen:
            raise InvalidInput("identifier listed twice", field=f"identifiers[{index}]")
        seen.add(key)


async def _identifier_taken(
    session: AsyncSession, identifiers: list[Identifier], except_patient: uuid.UUID | None = None
) -> None:
    for index, ident in enumerate(identifiers):
        query = select(PatientIdentifier.patient_id).where(
            PatientIdentifier.system == ident.system, PatientIdentifier.value == ident.value
        )
        owner = await session.scalar(query)
        if owner is not None and owner != except_patient:
            raise Conflict(
                f"identifier {ident.system}|{ident.value} belongs to another patient", field=f"identifiers[{index}]"
            )


def _address(value: Address | None) -> dict[str, object] | None:
    """An address as stored: blank parts are left out, and an address with nothing left is no address."""
    if value is None:
        return None
    stored: dict[str, object] = {}
    lines = [line.strip() for line in value.line if line.strip()]
    if lines:
        stored["line"] = lines
    for part in ("city", "state", "postal_code", "country"):
        text = (getattr(value, part) or "").strip()
        if text:
            stored[part] = text
    return stored or None


_BY_MRN = prebuilt(select(Patient.id).where(Patient.mrn == bindparam("mrn")))


async def create(session: AsyncSession, principal: Principal, data: PatientCreate) -> PatientOut:
    principal.require("patients", "write")
    _check_birth_date(data.birth_date)
    _check_identifiers(data.identifiers)
    if await session.scalar(_BY_MRN, {"mrn": data.mrn}) is not None:
        raise Conflict(f"a patient with MRN {data.mrn} already exists", field="mrn")
    await _identifier_taken(session, data.identifiers)
    # A new record is appended as rows (no ORM object: nothing changes it in this request), written with the
    # request's other rows in one go; the output is shaped from the same values.
    now = utcnow()
    row: dict[str, Any] = {
        "mrn": data.mrn,
        "given_name": data.given_name,
        "family_name": data.family_name,
        "birth_date": data.birth_date,
        "sex": data.sex,
        "phone": data.phone,
        "email": data.email,
        "address": _address(data.address),
        "language": data.language,
        "active": True,
        "deactivated_at": None,
        "id": uuid.uuid4(),
        "created_at": now,
        "updated_at": now,
    }
    append(session, Patient, row)
    identifiers = [(i.system, i.value) for i in data.identifiers]
    for system, value in identifiers:
        append(
            session, PatientIdentifier, {"patient_id": row["id"], "system": system, "value": value, "id": uuid.uuid4()}
        )
    patient_id = row["id"]
    PATIENTS.audit_ids(session, principal, "patient.create", patient_id, patient_id)
    outbox.emit(session, "patient.created", {"patient_id": str(patient_id)}, aggregate_id=patient_id)
    await linking.link_new(session, principal.actor, row, identifiers)
    return to_out(SimpleNamespace(**row, identifiers=[Identifier(system=s, value=v) for s, v in identifiers]))


async def require_patient(
    session: AsyncSession,
    principal: Principal,
    patient_id: uuid.UUID,
    action: str,
    *,
    active: bool = False,
    need: str | None = None,
) -> Patient:
    """The caller's tenant's patient, for a record about them; 404 (audited as ``action``) otherwise.

    With ``active``, a deactivated patient is refused (409): no new care is planned for a closed record. With
    ``need``, the caller must first be allowed that act on patient records (403).
    """
    patient = await PATIENTS.get(session, principal, patient_id, action, need=need)
    if active and not patient.active:
        raise Conflict("the patient's record is deactivated", field="patient_id")
    return patient


# A patient with its identifiers, as plain rows (one per identifier, or one with no identifier): a read changes
# nothing, so it is shaped from the columns without the ORM's loading (see tenants.isolation.plain_rows).
_READ = prebuilt(
    select(*[getattr(Patient, a.key) for a in sa_inspect(Patient).column_attrs])
    .add_columns(PatientIdentifier.system.label("identifier_system"), PatientIdentifier.value.label("identifier_value"))
    .outerjoin(
        PatientIdentifier,
        (PatientIdentifier.patient_id == Patient.id) & (PatientIdentifier.tenant_id == Patient.tenant_id),
    )
    .where(Patient.id == bindparam("record_id"))
    .order_by(PatientIdentifier.system)
)


async def read(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> PatientOut:
    principal.require("patients", "read")
    rows = await plain_rows(session, _READ, {"record_id": patient_id})
    if not rows:
        raise PATIENTS.refuse(session, principal, patient_id, "patient.read")
    PATIENTS.audit_ids(session, principal, "patient.read", patient_id, patient_id)
    identifiers = [
        Identifier(system=r.identifier_system, value=r.identifier_value)
        for r in rows
        if r.identifier_system is not None
    ]
    return to_out(SimpleNamespace(**rows[0]._mapping, identifiers=identifiers))


async def update(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, changes: PatientUpdate
) -> PatientOut:
    patient = await PATIENTS.get(session, principal, patient_id, "patient.update", need="write")
    given = inputs.given(changes)
    for field in ("given_name", "family_name", "birth_date", "sex"):
        if field in given and given[field] is None:
            raise InvalidInput(f"{field} cannot be empty", field=field)
    if "birth_date" in given:
        _check_birth_date(given["birth_date"])
    if "identifiers" in given:
        _check_identifiers(given["identifiers"])
        await _identifier_taken(session, given["identifiers"], except_patient=patient.id)
    changed: list[str] = []
    for field, value in given.items():
        if field == "identifiers":
            wanted = sorted((i.system, i.value) for i in value)
            if wanted == sorted((i.system, i.value) for i in patient.identifiers):
                continue
            # Let the removed identifiers go before the new ones claim their unique keys.
            patient.identifiers.clear()
            await session.flush()
            patient.identifiers.extend(PatientIdentifier(system=system, value=v) for system, v in wanted)
        else:
            new = _address(value) if field == "address" else value
            if getattr(patient, field) == new:
                continue
            setattr(patient, field, new)
        changed.append(field)
    if changed:
        patient.updated_at = utcnow()
    PATIENTS.audit(session, principal, patient, "patient.update", fields=changed)
    if changed:
        outbox.emit(
            session, "patient.updated", {"patient_id": str(patient.id), "fields": changed}, aggregate_id=patient.id
        )
    await session.flush()
    if changed:
        await linking.sync_patient(session, patient, principal.actor)
    return PATIENTS.to_out(patient)


async def deactivate(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> PatientOut:
    patient = await PATIENTS.get(session, principal, patient_id, "patient.deactivate", need="deactivate")
    if patient.active:
        patient.active = False
        patient.deactivated_at = utcnow()
        outbox.emit(session, "patient.deactivated", {"patient_id": str(patient.id)}, aggregate_id=patient.id)
    PATIENTS.audit(session, principal, patient, "patient.deactivate")
    await session.flush()
    return PATIENTS.to_out(patient)


@lru_cache(maxsize=128)
def _search_query(
    include_inactive: bool, name_parts: int, by_birth_date: bool, by_identifier: tuple[bool, bool] | None
) -> Select[Patient]:
    """The patient search for one combination of criteria, built once (building it cost more than running it);
    the values come as parameters: ``name_<n>`` (a LIKE pattern per name part), ``birth_date``, ``system``,
    ``value``, ``limit`` and ``offset``. ``by_identifier`` is (the system is named, the MRN may match)."""
    query = records.many(Patient)
    if not include_inactive:
        query = query.where(Patient.active.is_(True))
    for n in range(name_parts):
        pattern = bindparam(f"name_{n}", type_=String)
        query = query.where(
            or_(
                func.lower(Patient.given_name).like(pattern, escape="\\"),
                func.lower(Patient.family_name).like(pattern, escape="\\"),
            )
        )
    if by_birth_date:
        query = query.where(Patient.birth_date == bindparam("birth_date"))
    if by_identifier is not None:
        named_system, mrn_too = by_identifier
        ident_query = select(PatientIdentifier.patient_id).where(PatientIdentifier.value == bindparam("value"))
        if named_system:
            ident_query = ident_query.where(PatientIdentifier.system == bindparam("system"))
        conditions: list[ColumnElement[bool]] = [Patient.id.in_(ident_query)]
        if mrn_too:
            conditions.append(Patient.mrn == bindparam("value"))
        query = query.where(or_(*conditions))
    query = query.order_by(Patient.family_name, Patient.given_name, Patient.id)
    query = query.limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer))
    # A search of many name parts is built for itself, not kept: the number of kept statements stays bounded.
    return prebuilt(query) if name_parts <= 4 else query


async def search(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str | None = None,
    birth_date: date | None = None,
    identifier: str | None = None,
    include_inactive: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[PatientOut]:
    """Patients matching every given criterion; ``name`` matches the start of given or family name,
    ``identifier`` is ``value`` or ``system|value`` and also matches the MRN."""
    principal.require("patients", "read")
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    parts = name.split() if name else []
    for n, part in enumerate(parts):
        params[f"name_{n}"] = part.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    system, sep, value = (identifier or "").rpartition("|")
    by_identifier = None
    if identifier:
        by_identifier = (bool(sep and system), not sep or system in ("", "mrn"))
        params.update(system=system, value=value)
    if birth_date:
        params["birth_date"] = birth_date
    query = _search_query(include_inactive, len(parts), bool(birth_date), by_identifier)
    patients = list((await session.scalars(query, params)).all())
    await records.fill(session, Patient, patients)
    for patient in patients:
        PATIENTS.audit(session, principal, patient, "patient.search")
    return [PATIENTS.to_out(p) for p in patients]
