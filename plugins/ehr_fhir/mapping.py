"""FHIR R4 JSON to the SDK's payloads: the building blocks (times, codings, references) and Patient.

A resource that cannot be mapped raises :class:`Unmappable` with a short reason without personal data (the
reasons are counted in the log); the pull skips it and goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from plugin_sdk.payloads import Coding, Identifier, PatientRecord, PatientRef

Json = Mapping[str, Any]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Security labels (meta.security, v3 ActCode) marking a record as sensitive. This plugin's manifest declares no
# sensitive label, so such a record is not passed on (the host would refuse the whole batch for it).
SENSITIVE_SECURITY_CODES = {
    "ETH": "substance_use_disorder",
    "SUD": "substance_use_disorder",
    "PSY": "behavioral_health",
    "PSYTHPN": "behavioral_health",
    "BH": "behavioral_health",
    "MH": "behavioral_health",
    "SOC": "social_needs",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_SEXES = {"female", "male", "other", "unknown"}


class Unmappable(ValueError):
    """This resource cannot become a carehub record; the message is the reason, counted in the pull's log."""


def when(value: Any) -> datetime | None:
    """A FHIR ``dateTime``/``instant`` as an aware datetime; a date alone (or a year, a month) is its first
    moment in UTC. A time without a timezone (which FHIR forbids) is refused."""
    if not isinstance(value, str) or not value:
        return None
    partial = _PARTIAL_DATE.match(value)
    if partial:
        return datetime(int(partial[1]), int(partial[2] or 1), 1, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Unmappable("malformed dateTime") from None
    if _DATE.match(value):
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise Unmappable("dateTime without a timezone")
    return parsed


def codings(concept: Any) -> list[Coding]:
    """The codings of a CodeableConcept (or a Coding) that have both a system and a code."""
    if not isinstance(concept, Mapping):
        return []
    raw = concept.get("coding") if "coding" in concept else [concept]
    raw = raw if isinstance(raw, list) else []
    found = []
    for item in raw:
        if isinstance(item, Mapping) and item.get("system") and item.get("code"):
            display = item.get("display") or (concept.get("text") if len(raw) == 1 else None)
            found.append(Coding(system=str(item["system"]), code=str(item["code"]), display=display))
    return found


def best_coding(concept: Any, prefer: Iterable[str] = ()) -> Coding | None:
    """The coding of the first preferred system, else the first coding."""
    found = codings(concept)
    for system in prefer:
        for coding in found:
            if coding.system == system:
                return coding
    return found[0] if found else None


def code_of(concept: Any, system: str | None = None) -> str | None:
    """The code of a CodeableConcept's first coding (of ``system``, when given)."""
    if not isinstance(concept, Mapping):
        return None
    for item in concept.get("coding") or []:
        if isinstance(item, Mapping) and item.get("code") and (system is None or item.get("system") == system):
            return str(item["code"])
    return None


def reference_key(reference: Any, resource_type: str = "Patient") -> str | None:
    """``Patient/123`` from a reference (relative, absolute or versioned); None for another type or a contained
    or logical reference."""
    if not isinstance(reference, Mapping) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return f"{resource_type}/{parts[-1]}"
    return None


def sensitive_label(resource: Json) -> str | None:
    for label in (resource.get("meta") or {}).get("security") or []:
        if isinstance(label, Mapping) and label.get("system") == ACT_CODE:
            found = SENSITIVE_SECURITY_CODES.get(str(label.get("code")))
            if found:
                return found
    return None


def identifiers(patient: Json, preferred_system: str | None) -> tuple[Identifier, ...]:
    """The patient's identifiers that have a system and a value, the preferred system's first."""
    found: list[Identifier] = []
    for item in patient.get("identifier") or []:
        if not isinstance(item, Mapping) or not item.get("system") or not item.get("value"):
            continue
        if item.get("use") == "old" or (item.get("period") or {}).get("end"):
            continue
        identifier = Identifier(system=str(item["system"]), value=str(item["value"]))
        if identifier not in found:
            found.append(identifier)
    found.sort(key=lambda i: i.system != preferred_system)  # stable: otherwise the EHR's order
    return tuple(found)


def patient_ref(patient: Json, preferred_system: str | None) -> PatientRef:
    found = identifiers(patient, preferred_system)
    if not found:
        raise Unmappable("patient without identifiers")
    return PatientRef(identifiers=found)


def _preferred(items: Any, prefer_use: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The first item (name, telecom, address) of the most preferred ``use``, leaving out old ones."""
    current = [i for i in items or [] if isinstance(i, Mapping) and i.get("use") != "old"]
    current = [i for i in current if not (i.get("period") or {}).get("end")]
    for use in prefer_use:
        for item in current:
            if item.get("use") == use:
                return item
    return current[0] if current else None


def _contact(telecom: Any, system: str) -> str | None:
    matching = [t for t in telecom or [] if isinstance(t, Mapping) and t.get("system") == system]
    chosen = _preferred(matching, ("mobile", "home", "work"))
    value = chosen.get("value") if chosen else None
    return str(value) if value else None


def _address(patient: Json) -> dict[str, str] | None:
    chosen = _preferred(patient.get("address"), ("home",))
    if chosen is None:
        return None
    lines = ", ".join(str(line) for line in chosen.get("line") or [] if line)
    fields = {
        "line": lines,
        "city": chosen.get("city"),
        "state": chosen.get("state"),
        "postal_code": chosen.get("postalCode"),
        "country": chosen.get("country"),
    }
    address = {k: str(v) for k, v in fields.items() if v}
    return address or None


def _language(patient: Json) -> str | None:
    spoken = [c for c in patient.get("communication") or [] if isinstance(c, Mapping)]
    spoken.sort(key=lambda c: c.get("preferred") is not True)
    for item in spoken:
        language = item.get("language") or {}
        code = code_of(language) or language.get("text")
        if code:
            return str(code)
    return None


def patient_record(patient: Json, preferred_system: str | None) -> PatientRecord:
    """A Patient as a :class:`PatientRecord`: identifiers (the MRN system first), the official name (else the
    usual, else the first), birth date, gender, phone, email, home address, preferred language, active."""
    ref = patient_ref(patient, preferred_system)
    name = _preferred(patient.get("name"), ("official", "usual")) or {}
    given = [str(g) for g in name.get("given") or [] if g]
    family = name.get("family")
    if not given or not family:
        raise Unmappable("patient without a given and a family name")
    birth = patient.get("birthDate")
    if not isinstance(birth, str) or not _DATE.match(birth):
        raise Unmappable("patient without a full birthDate")
    gender = patient.get("gender")
    return PatientRecord(
        identifiers=ref.identifiers,
        given_name=given[0],
        family_name=str(family),
        birth_date=date.fromisoformat(birth),
        sex=gender if gender in _SEXES else "unknown",
        phone=_contact(patient.get("telecom"), "phone"),
        email=_contact(patient.get("telecom"), "email"),
        address=_address(patient),
        language=_language(patient),
        active=patient.get("active") is not False,
    )
