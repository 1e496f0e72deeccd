"""FHIR R4 Encounter and Condition JSON to the SDK's records (the patient already resolved).

``external_id`` is ``<resourceType>/<id>``: the EHR's logical id, stable across versions, so a changed resource
updates carehub's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from plugin_sdk.payloads import Coding, ConditionRecord, EncounterRecord, PatientRef
from plugins.ehr_fhir.mapping import ICD10CM, SNOMED, Json, Unmappable, best_coding, code_of, codings, when

ENCOUNTER_KINDS: dict[str, Literal["inpatient", "emergency", "observation"]] = {
    "IMP": "inpatient",
    "ACUTE": "inpatient",
    "NONAC": "inpatient",
    "EMER": "emergency",
    "OBSENC": "observation",
}
ENCOUNTER_STATUSES: dict[str, Literal["planned", "in-progress", "finished", "cancelled"]] = {
    "planned": "planned",
    "arrived": "in-progress",
    "triaged": "in-progress",
    "in-progress": "in-progress",
    "onleave": "in-progress",
    "finished": "finished",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
}
DISPOSITIONS: dict[str, Literal["home", "home_health", "skilled_nursing", "rehabilitation", "hospice", "other"]] = {
    "home": "home",
    "hh": "home_health",
    "snf": "skilled_nursing",
    "rehab": "rehabilitation",
    "hosp": "hospice",
}
CONDITION_STATUSES = ("active", "recurrence", "relapse", "inactive", "remission", "resolved")


def _class_code(encounter: Json) -> str | None:
    value = encounter.get("class")
    if isinstance(value, list):  # R5: a list of CodeableConcepts
        return next((c for c in (code_of(v) for v in value) if c), None)
    if isinstance(value, Mapping):  # R4: a Coding
        return str(value["code"]) if value.get("code") else None
    return None


def _diagnoses(encounter: Json) -> tuple[Coding, ...]:
    found: list[Coding] = []
    contained = {c.get("id"): c for c in encounter.get("contained") or [] if isinstance(c, Mapping)}
    for diagnosis in encounter.get("diagnosis") or []:
        condition = (diagnosis or {}).get("condition") or {}
        reference = str(condition.get("reference") or "")
        if reference.startswith("#") and reference[1:] in contained:
            found += codings(contained[reference[1:]].get("code"))
        found += codings(condition.get("concept"))  # R5's CodeableReference
    for reason in encounter.get("reasonCode") or []:
        found += codings(reason)
    unique: list[Coding] = []
    for coding in found:
        if all((c.system, c.code) != (coding.system, coding.code) for c in unique):
            unique.append(coding)
    return tuple(unique)


def encounter_record(encounter: Json, patient: PatientRef) -> EncounterRecord:
    """Inpatient (IMP, ACUTE, NONAC), emergency (EMER) and observation (OBSENC) encounters; other classes are
    not carehub's (Unmappable)."""
    class_code = _class_code(encounter)
    kind = ENCOUNTER_KINDS.get(class_code or "")
    if kind is None:
        raise Unmappable(f"encounter class {class_code or 'missing'}")
    period = encounter.get("period") or {}
    admitted = when(period.get("start"))
    if admitted is None:
        raise Unmappable("encounter without period.start")
    discharged = when(period.get("end"))
    status = ENCOUNTER_STATUSES.get(str(encounter.get("status")))
    if status is None:  # "unknown"
        status = "finished" if discharged else "in-progress"
    hospitalization = encounter.get("hospitalization") or {}
    disposition_code = code_of(hospitalization.get("dischargeDisposition"))
    disposition = DISPOSITIONS.get(disposition_code, "other") if disposition_code else None
    locations = [(loc.get("location") or {}).get("display") for loc in encounter.get("location") or []]
    locations = [str(name) for name in locations if name]
    return EncounterRecord(
        external_id=f"Encounter/{encounter['id']}",
        patient=patient,
        kind=kind,
        status=status,
        admitted_at=admitted,
        discharged_at=discharged,
        disposition=disposition,
        diagnoses=_diagnoses(encounter),
        location=locations[-1] if locations else None,  # the last listed is the current or final one
    )


def condition_record(condition: Json, patient: PatientRef) -> ConditionRecord:
    verification = code_of(condition.get("verificationStatus"))
    if verification in ("refuted", "entered-in-error"):
        raise Unmappable(f"condition {verification}")
    code = best_coding(condition.get("code"), (SNOMED, ICD10CM))
    if code is None:
        raise Unmappable("condition without a coded code")
    status = code_of(condition.get("clinicalStatus")) or "active"
    if status not in CONDITION_STATUSES:
        raise Unmappable(f"condition clinicalStatus {status}")
    onset = when(condition.get("onsetDateTime")) or when((condition.get("onsetPeriod") or {}).get("start"))
    abatement = when(condition.get("abatementDateTime")) or when((condition.get("abatementPeriod") or {}).get("end"))
    return ConditionRecord(
        external_id=f"Condition/{condition['id']}",
        patient=patient,
        code=code,
        clinical_status=status,  # type: ignore[arg-type]  # checked against CONDITION_STATUSES above
        onset=onset,
        abatement=abatement,
    )
