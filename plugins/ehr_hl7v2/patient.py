"""The patient of a PID segment: identifiers (every PID-3 repetition), name, birth date, sex, contact, language.

An identifier's system comes from its assigning authority (CX-4): the configured ``assigning_authority_systems``
(by namespace id, else by universal id), else the universal id itself when typed (``ISO`` -> ``urn:oid:``,
``UUID`` -> ``urn:uuid:``, ``URI``), else a system named after the namespace; a social security number (CX-5
``SS``) without a configured system is the US SSN system; no authority at all is ``identifier_system``. Medical
record numbers (CX-5 ``MR``) come first, since the first identifier is the MRN of a patient carehub creates.
"""

from __future__ import annotations

from urllib.parse import quote

from plugin_sdk.payloads import Identifier, PatientRecord, PatientRef
from plugins.ehr_hl7v2 import tables
from plugins.ehr_hl7v2.config import UNMAPPED_AUTHORITY_PREFIX, Settings
from plugins.ehr_hl7v2.errors import invalid, missing
from plugins.ehr_hl7v2.parse import Repetition, Segment
from plugins.ehr_hl7v2.times import parse_date


def identifier(cx: Repetition, settings: Settings) -> Identifier | None:
    """A CX (PID-3, MRG-1) as an identifier; None without an id number."""
    value = cx(1).strip()
    if not value:
        return None
    namespace, universal, kind = cx(4, 1).strip(), cx(4, 2).strip(), cx(4, 3).strip().upper()
    system = settings.authority_systems.get(namespace) or settings.authority_systems.get(universal)
    if not system and universal:
        system = {"ISO": f"urn:oid:{universal}", "UUID": f"urn:uuid:{universal.lower()}", "URI": universal}.get(kind)
    if not system and cx(5).strip().upper() == "SS":
        system = tables.US_SSN
    if not system and namespace:
        system = UNMAPPED_AUTHORITY_PREFIX + quote(namespace, safe="")
    return Identifier(system=system or settings.identifier_system, value=value)


def identifiers(segment: Segment, field: int, settings: Settings) -> tuple[Identifier, ...]:
    """Every identifier of a CX field, MRNs first, each once; :class:`MessageError` when there is none."""
    found: list[tuple[bool, Identifier]] = []
    for cx in segment.repetitions(field):
        item = identifier(cx, settings)
        if item is not None and all(item != known for _, known in found):
            found.append((cx(5).strip().upper() != "MR", item))
    if not found:
        raise missing(segment.location(field), "patient identifier list")
    found.sort(key=lambda pair: pair[0])  # stable: MRNs first, otherwise the sender's order
    return tuple(item for _, item in found)


def reference(segment: Segment, settings: Settings) -> PatientRef:
    return PatientRef(identifiers=identifiers(segment, 3, settings))


def record(pid: Segment, settings: Settings) -> PatientRecord:
    """PID as a :class:`PatientRecord`; :class:`MessageError` for a missing identifier, name or birth date."""
    ids = identifiers(pid, 3, settings)
    name = pid.first(5)
    family, given = name(1, 1).strip(), name(2).strip()
    if not family or not given:
        raise missing(pid.location(5), "patient name, family and given")
    born = pid.text(7)
    if not born:
        raise missing(pid.location(7), "date of birth")
    try:
        birth_date = parse_date(born)
    except ValueError as exc:
        raise invalid(pid.location(7), "date of birth", str(exc)) from exc
    phone, email = _contact(pid)
    return PatientRecord(
        identifiers=ids,
        given_name=given,
        family_name=family,
        birth_date=birth_date,
        sex=tables.SEXES.get(pid.text(8).upper(), "unknown"),
        phone=phone,
        email=email,
        address=_address(pid.first(11)),
        language=_language(pid.first(15)),
    )


def _contact(pid: Segment) -> tuple[str | None, str | None]:
    """The first telephone number and the first e-mail address of PID-13 (home), then PID-14 (business)."""
    phone = email = None
    for xtn in pid.repetitions(13) + pid.repetitions(14):
        if xtn(3).strip().upper() in ("INTERNET", "X.400") or xtn(2).strip().upper() == "NET":
            email = email or xtn(4).strip() or xtn(1).strip() or None
            continue
        number = xtn(1).strip()
        if not number and xtn(7).strip():
            country, area, local = xtn(5).strip(), xtn(6).strip(), xtn(7).strip()
            number = " ".join(p for p in (f"+{country}" if country else "", area, local) if p)
            if xtn(8).strip():
                number += f" x{xtn(8).strip()}"
        phone = phone or number or None
    return phone, email


def _address(xad: Repetition) -> dict[str, str] | None:
    parts = {
        "line": ", ".join(p for p in (xad(1, 1).strip(), xad(2).strip()) if p),
        "city": xad(3).strip(),
        "state": xad(4).strip(),
        "postal_code": xad(5).strip(),
        "country": xad(6).strip(),
    }
    address = {k: v for k, v in parts.items() if v}
    return address or None


def _language(ce: Repetition) -> str | None:
    code = ce(1).strip()
    if not code:
        return None
    return tables.LANGUAGES.get(code.upper(), code.lower())
