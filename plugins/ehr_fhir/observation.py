"""FHIR R4 Observation JSON (laboratory results and vital signs) to the SDK's ObservationRecord.

``external_id`` is ``Observation/<id>``. Categories other than laboratory and vital-signs (social history,
surveys, imaging) are not this plugin's: they are skipped, as they may carry what the manifest does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from plugin_sdk.payloads import Interpretation, ObservationRecord, PatientRef
from plugins.ehr_fhir.mapping import LOINC, Json, Unmappable, best_coding, code_of, codings, when

OBSERVATION_STATUSES: dict[str, Literal["preliminary", "final", "corrected", "cancelled"]] = {
    "registered": "preliminary",
    "preliminary": "preliminary",
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
}
INTERPRETATION_SYSTEMS = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "http://hl7.org/fhir/v2/0078",  # DSTU2's name for the same table
)
# ObservationInterpretation (HL7 table 0078) codes; any other code present is "abnormal", none at all "normal".
INTERPRETATIONS: dict[str, Interpretation] = {
    "N": "normal",
    "NEG": "normal",
    "ND": "normal",
    "A": "abnormal",
    "POS": "abnormal",
    "DET": "abnormal",
    "H": "high",
    "HU": "high",
    ">": "high",
    "L": "low",
    "LU": "low",
    "<": "low",
    "HH": "critical_high",
    "LL": "critical_low",
    "AA": "critical",
}
_SEVERITY: tuple[Interpretation, ...] = (
    "normal",
    "abnormal",
    "low",
    "high",
    "critical",
    "critical_low",
    "critical_high",
)
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


def _number(value: Any) -> str:
    """A JSON number as the EHR wrote it: bodies are parsed with decimals, so 5.10 stays "5.10" (its precision is
    part of a lab result) and 0.1 never becomes 0.1000000000000000055."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Unmappable("quantity value is not a number")
    if isinstance(value, float):
        value = Decimal(repr(value))
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _value(observation: Json) -> tuple[str, str | None]:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, Mapping) and "value" in quantity:
        comparator = str(quantity.get("comparator") or "")
        return comparator + _number(quantity["value"]), quantity.get("unit") or quantity.get("code")
    if isinstance(observation.get("valueString"), str):
        return observation["valueString"], None
    concept = observation.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        text = concept.get("text") or next((c.display or c.code for c in codings(concept)), None)
        if text:
            return str(text), None
    for kind in ("valueInteger", "valueBoolean"):
        if kind in observation:
            return str(observation[kind]).lower(), None
    # A panel such as blood pressure: its components' quantities, "120/80" when they share a unit.
    parts = [(c.get("valueQuantity") or {}) for c in observation.get("component") or [] if isinstance(c, Mapping)]
    if parts and all("value" in p for p in parts) and len({p.get("unit") for p in parts}) == 1:
        return "/".join(_number(p["value"]) for p in parts), parts[0].get("unit")
    raise Unmappable("observation without a value")


def reference_range(observation: Json) -> str | None:
    """The first referenceRange as text: ``3.5-5.1 mmol/L``, ``>=60 mL/min``, ``<=0.04 ng/mL`` or its text."""
    for item in observation.get("referenceRange") or []:
        low, high = item.get("low") or {}, item.get("high") or {}
        unit = high.get("unit") or low.get("unit")
        suffix = f" {unit}" if unit else ""
        if "value" in low and "value" in high:
            return f"{_number(low['value'])}-{_number(high['value'])}{suffix}"
        if "value" in low:
            return f">={_number(low['value'])}{suffix}"
        if "value" in high:
            return f"<={_number(high['value'])}{suffix}"
        if item.get("text"):
            return str(item["text"])
    return None


def interpretation(observation: Json) -> Interpretation:
    """The most severe flag among the interpretation codings; "normal" when there is none.

    A code of ObservationInterpretation (or a coding without a system) is mapped, an unknown one as "abnormal";
    a local system's coding counts only when its code is one of the table's (a local "HH" is still critical)."""
    flags: list[Interpretation] = []
    for concept in observation.get("interpretation") or []:
        for coding in (concept or {}).get("coding") or []:
            code = str(coding.get("code") or "")
            if not code:
                continue
            if coding.get("system", INTERPRETATION_SYSTEMS[0]) in INTERPRETATION_SYSTEMS:
                flags.append(INTERPRETATIONS.get(code, "abnormal"))
            elif code in INTERPRETATIONS:
                flags.append(INTERPRETATIONS[code])
    return max(flags, key=_SEVERITY.index) if flags else "normal"


def _category(observation: Json) -> Literal["laboratory", "vital-signs"]:
    for concept in observation.get("category") or []:
        code = code_of(concept, CATEGORY_SYSTEM) or code_of(concept)
        if code in ("laboratory", "vital-signs"):
            return code  # type: ignore[return-value]  # one of the two, checked
    raise Unmappable("observation category not laboratory or vital-signs")


def observation_record(observation: Json, patient: PatientRef) -> ObservationRecord:
    """Labs and vital signs: code (LOINC preferred), value and unit, reference range, interpretation, status."""
    status = OBSERVATION_STATUSES.get(str(observation.get("status")))
    if status is None:
        raise Unmappable(f"observation status {observation.get('status')}")
    category = _category(observation)
    code = best_coding(observation.get("code"), (LOINC,))
    if code is None:
        raise Unmappable("observation without a coded code")
    effective = (
        when(observation.get("effectiveDateTime"))
        or when(observation.get("effectiveInstant"))
        or when((observation.get("effectivePeriod") or {}).get("start"))
        or when(observation.get("issued"))
    )
    if effective is None:
        raise Unmappable("observation without an effective time")
    value, unit = _value(observation)
    return ObservationRecord(
        external_id=f"Observation/{observation['id']}",
        patient=patient,
        code=code,
        value=value,
        unit=str(unit) if unit else None,
        reference_range=reference_range(observation),
        interpretation=interpretation(observation),
        status=status,
        category=category,
        effective_at=effective,
    )
