"""ORU^R01 results: each OBX an observation of the patient of the PID before it (a message may carry several
patients, each with their orders).

- code: OBX-3, its LOINC coding (primary or alternate) preferred; value: OBX-5 by its type (OBX-2): a coded
  value's text, a structured numeric as written (``<5``, ``1:128``), text with its repetitions on separate lines;
  encapsulated documents (ED, RP) are not results and are skipped.
- unit OBX-6 (its code), reference range OBX-7, interpretation from OBX-8 (:func:`tables.interpretation`: the
  configured ``critical_flags`` decide what is critical), status OBX-11 (else OBR-25, else final; a result not
  yet there, ``I``, ``O`` or ``N``, is skipped), effective at OBX-14, else OBR-7.
- external id: the filler order number (OBR-3, else the placer's OBR-2, else ORC-3, else MSH-10) with the
  observation's code and sub-id (``F1001/2345-7``); a code repeated in the same order adds OBX-1.
- category: vital-signs for the LOINC vital signs, laboratory otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plugin_sdk.effects import AddObservation, AnyEffect, UpsertPatient
from plugin_sdk.payloads import Coding, ObservationRecord, PatientRef
from plugins.ehr_hl7v2 import patient, tables
from plugins.ehr_hl7v2.config import Settings
from plugins.ehr_hl7v2.errors import SEGMENT_SEQUENCE, TABLE_VALUE_NOT_FOUND, MessageError, missing
from plugins.ehr_hl7v2.parse import Message, Repetition, Segment
from plugins.ehr_hl7v2.times import field_time

_CODED = {"CE", "CWE", "CNE", "CF"}
_TEXT = {"ST", "TX", "FT"}
_DOCUMENTS = {"ED", "RP"}


@dataclass
class _Order:
    filler: str
    effective_at: datetime | None
    status: tables.ResultStatus | None
    seen: set[str]


def coding(ce: Repetition) -> Coding | None:
    """A CE/CWE's LOINC coding (primary or alternate triplet), else its first coding with a code."""
    triplets = [(ce(1).strip(), ce(2).strip(), ce(3).strip()), (ce(4).strip(), ce(5).strip(), ce(6).strip())]
    for code, text, system in triplets:
        if code and tables.coding_system(system) == tables.LOINC:
            return Coding(system=tables.LOINC, code=code, display=text or None)
    for code, text, system in triplets:
        if code:
            return Coding(system=tables.coding_system(system), code=code, display=text or None)
    return None


def value(obx: Segment) -> str | None:
    """OBX-5 as text by its value type (module docstring); None for an encapsulated document."""
    kind = obx.text(2).upper()
    if kind in _DOCUMENTS:
        return None
    repetitions = obx.repetitions(5)
    if kind in _CODED:
        return ", ".join(r(2).strip() or r(1).strip() for r in repetitions)
    if kind == "SN":
        return ", ".join("".join(r.components()).strip() for r in repetitions)
    texts = ["^".join(r.components()).rstrip("^") for r in repetitions]
    return "\n".join(texts) if kind in _TEXT else ", ".join(t.strip() for t in texts)


def _status(obx: Segment, order: _Order) -> tables.ResultStatus | None:
    raw = obx.text(11).upper()
    if not raw:
        return order.status or "final"
    if raw not in tables.RESULT_STATUS:
        location = obx.location(11)
        raise MessageError(
            f"{location} (result status) {raw!r} is not in table 0085", code=TABLE_VALUE_NOT_FOUND, location=location
        )
    return tables.RESULT_STATUS[raw]


def observation(obx: Segment, order: _Order, ref: PatientRef, settings: Settings) -> ObservationRecord | None:
    """One OBX as an observation; None for one that holds no result."""
    code = coding(obx.first(3))
    if code is None:
        raise missing(obx.location(3), "observation identifier")
    status = _status(obx, order)
    text = value(obx)
    if status is None or text is None or (not text.strip() and status != "cancelled"):
        return None
    effective = field_time(obx, 14, settings.zone, "date/time of the observation") or order.effective_at
    if effective is None:
        raise missing(obx.location(14), "date/time of the observation (or OBR-7)")
    key = f"{order.filler}/{code.code}" + (f"/{obx.text(4)}" if obx.text(4) else "")
    if key in order.seen:
        key += f"#{obx.text(1) or obx.ordinal}"
    order.seen.add(key)
    unit = obx.first(6)
    vital = code.system == tables.LOINC and code.code in tables.VITAL_SIGNS
    return ObservationRecord(
        external_id=key,
        patient=ref,
        code=code,
        value=text,
        unit=unit(1).strip() or unit(2).strip() or None,
        reference_range=obx.text(7) or None,
        interpretation=tables.interpretation([r(1) for r in obx.repetitions(8)], settings.critical_flags),
        status=status,
        category="vital-signs" if vital else "laboratory",
        effective_at=effective,
    )


def _order(obr: Segment, orc: Segment | None, control_id: str, settings: Settings) -> _Order:
    filler = obr.text(3) or obr.text(2) or (orc.text(3) if orc is not None else "") or f"{control_id}-{obr.ordinal}"
    status = tables.RESULT_STATUS.get(obr.text(25).upper())
    return _Order(filler, field_time(obr, 7, settings.zone, "observation date/time"), status, set())


def effects(message: Message, settings: Settings) -> tuple[list[AnyEffect], list[str]]:
    """The patients (each once, first) and observations of an ORU^R01, and the MRNs it is about."""
    if message.first("PID") is None:
        raise MessageError("the message has no PID segment", code=SEGMENT_SEQUENCE, location="PID")
    patients: list[AnyEffect] = []
    results: list[AnyEffect] = []
    subjects: list[str] = []
    ref: PatientRef | None = None
    orc: Segment | None = None
    order = _Order(message.header.control_id, None, None, set())
    for segment in message.segments:
        if segment.name == "PID":
            record = patient.record(segment, settings)
            patients.append(UpsertPatient(patient=record, keep_missing=True))
            ref = PatientRef(identifiers=record.identifiers)
            subjects.append(record.identifiers[0].value)
        elif segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR":
            order = _order(segment, orc, message.header.control_id, settings)
        elif segment.name == "OBX":
            if ref is None:
                raise MessageError("an OBX comes before any PID", code=SEGMENT_SEQUENCE, location=segment.location())
            found = observation(segment, order, ref, settings)
            if found is not None:
                results.append(AddObservation(observation=found))
    return patients + results, subjects
