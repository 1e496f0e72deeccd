"""ADT messages: the patient, and the stay they describe as an encounter.

Which stays are encounters (PV1-2 patient class, PV1-18 patient type): one whose patient type, or class, is in
``observation_patient_types`` (``OBS``, ``OBV``) is an observation stay, whatever its class among ``O``, ``I`` and
``E`` (feeds put observation patients under either); otherwise ``I`` is inpatient and ``E`` emergency. Any other
class (outpatient, preadmit, recurring) is no encounter carehub tracks: such a message updates the patient only.

The encounter is keyed by the visit number (PV1-19), else by the first identifier and the admission time. It is
admitted at PV1-44 (A01 and A04 fall back on EVN-6, then EVN-2), discharged (A03) at PV1-45 (then EVN-6, EVN-2),
at PV1-3's unit, room and bed, with the DG1 diagnoses. A08 updates the patient only: a visit it carries may have
ended since, and re-sending it would reopen the encounter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from plugin_sdk.effects import AnyEffect, MergePatient, RecordEncounter, UpsertPatient
from plugin_sdk.labels import strongest
from plugin_sdk.payloads import Coding, EncounterRecord, PatientRef
from plugins.ehr_hl7v2 import patient, tables
from plugins.ehr_hl7v2.config import Settings
from plugins.ehr_hl7v2.errors import SEGMENT_SEQUENCE, MessageError, missing
from plugins.ehr_hl7v2.parse import Message, Segment
from plugins.ehr_hl7v2.times import field_time

Kind = Literal["inpatient", "emergency", "observation"]
Status = Literal["planned", "in-progress", "finished", "cancelled"]
# Each supported trigger and the word for it in the message list.
TRIGGERS = {
    "A01": "admit",
    "A02": "transfer",
    "A03": "discharge",
    "A04": "registration",
    "A08": "update",
    "A11": "cancel admit",
    "A13": "cancel discharge",
    "A40": "merge",
}
_STATUS: dict[str, Status] = {"A03": "finished", "A11": "cancelled"}
_HOSPITAL_CLASSES = {"O", "I", "E"}


def _required(message: Message, name: str) -> Segment:
    segment = message.first(name)
    if segment is None:
        raise MessageError(f"the message has no {name} segment", code=SEGMENT_SEQUENCE, location=name)
    return segment


def kind(pv1: Segment, settings: Settings) -> Kind | None:
    """The encounter kind of a visit (see the module's docstring), None for one that is not an encounter."""
    patient_class, patient_type = pv1.text(2).upper(), pv1.text(18).upper()
    if patient_class in settings.observation_types or (
        patient_type in settings.observation_types and patient_class in _HOSPITAL_CLASSES
    ):
        return "observation"
    if patient_class == "I":
        return "inpatient"
    if patient_class == "E":
        return "emergency"
    return None


def location(pv1: Segment) -> str | None:
    """PV1-3 as ``unit-room-bed`` (``4W-401-A``), else its description (PL-9)."""
    pl = pv1.first(3)
    text = "-".join(p for p in (pl(1).strip(), pl(2).strip(), pl(3).strip()) if p)
    return text or pl(9).strip() or None


def diagnoses(message: Message) -> tuple[Coding, ...]:
    """The DG1 diagnoses: DG1-3's code, its system from DG1-3.3 (else the v2.3 coding method DG1-2)."""
    found: list[Coding] = []
    for dg1 in message.all("DG1"):
        code = dg1.first(3)
        if not code(1).strip():
            continue
        system = tables.coding_system(code(3).strip() or dg1.text(2))
        item = Coding(system=system, code=code(1).strip(), display=code(2).strip() or dg1.text(4) or None)
        if all((c.system, c.code) != (item.system, item.code) for c in found):
            found.append(item)
    return tuple(found)


def _time(message: Message, pv1: Segment, field: int, settings: Settings, what: str, fallback: bool) -> datetime:
    """PV1's time in ``field``, else (``fallback``) EVN-6's or EVN-2's; :class:`MessageError` when none."""
    moment = field_time(pv1, field, settings.zone, what)
    evn = message.first("EVN")
    if moment is None and fallback and evn is not None:
        moment = field_time(evn, 6, settings.zone, "event occurred") or field_time(evn, 2, settings.zone, "event")
    if moment is None:
        raise missing(pv1.location(field), what)
    return moment


def encounter(message: Message, trigger: str, ref: PatientRef, settings: Settings) -> EncounterRecord | None:
    """The encounter an ADT message describes, None when its visit is not an encounter (module docstring)."""
    pv1 = _required(message, "PV1")
    visit_kind = kind(pv1, settings)
    if visit_kind is None:
        return None
    admitted = _time(message, pv1, 44, settings, "admit date/time", fallback=trigger in ("A01", "A04"))
    discharged = None
    if trigger == "A03":
        discharged = _time(message, pv1, 45, settings, "discharge date/time", fallback=True)
    stamp = admitted.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    found = diagnoses(message)
    return EncounterRecord(
        external_id=pv1.text(19) or f"{ref.identifiers[0].value}@{stamp}",
        patient=ref,
        kind=visit_kind,
        status=_STATUS.get(trigger, "in-progress"),
        admitted_at=admitted,
        discharged_at=discharged,
        disposition=tables.disposition(pv1.text(36)) if trigger == "A03" else None,
        diagnoses=found,
        location=location(pv1),
        # A stay for a substance use disorder or a psychiatric one is shared only as its consent allows.
        data_category=strongest(found) if settings.label_diagnoses else None,
    )


def effects(message: Message, trigger: str, settings: Settings) -> tuple[list[AnyEffect], list[str]]:
    """The effects of an ADT message, and the MRNs it is about (for the summary)."""
    if trigger == "A40":
        return _merge(message, settings)
    pid = _required(message, "PID")
    record = patient.record(pid, settings)
    found: list[AnyEffect] = [UpsertPatient(patient=record, keep_missing=True)]
    if trigger != "A08" and (trigger != "A04" or message.first("PV1") is not None):
        visit = encounter(message, trigger, PatientRef(identifiers=record.identifiers), settings)
        if visit is not None:
            found.append(RecordEncounter(encounter=visit))
    return found, [record.identifiers[0].value]


def _merge(message: Message, settings: Settings) -> tuple[list[AnyEffect], list[str]]:
    """A40: each PID (the surviving patient) and the MRG after it (the prior identifiers, MRG-1)."""
    _required(message, "PID")
    found: list[AnyEffect] = []
    subjects: list[str] = []
    current: PatientRef | None = None
    for segment in message.segments:
        if segment.name == "PID":
            if current is not None:
                raise MessageError("a PID has no MRG after it", code=SEGMENT_SEQUENCE, location="MRG")
            record = patient.record(segment, settings)
            found.append(UpsertPatient(patient=record, keep_missing=True))
            current = PatientRef(identifiers=record.identifiers)
        elif segment.name == "MRG" and current is not None:
            merged = PatientRef(identifiers=patient.identifiers(segment, 1, settings))
            found.append(MergePatient(surviving=current, merged=merged))
            subjects.append(f"{merged.identifiers[0].value} into {current.identifiers[0].value}")
            current = None
    if current is not None:
        raise MessageError("the message has no MRG segment", code=SEGMENT_SEQUENCE, location="MRG")
    return found, subjects
