"""What the FHIR mappings share: carehub's code systems and extensions, references, dates and validation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from core.errors import InvalidInput

FHIR_VERSION = "4.0.1"
MEDIA_TYPE = "application/fhir+json"
# The resource types carehub serves, in the order the capability statement lists them.
RESOURCE_TYPES = ("Patient", "CareTeam", "CarePlan", "Goal", "Task", "Appointment", "Communication", "Consent")

_CARE_HUB = "urn:carehub:fhir"
CARE_TEAM_ROLE = f"{_CARE_HUB}:care-team-role"
ACTIVITY_KIND = f"{_CARE_HUB}:care-plan-activity-kind"
APPOINTMENT_KIND = f"{_CARE_HUB}:appointment-kind"
TASK_TEMPLATE = f"{_CARE_HUB}:task-template"
BCP47 = "urn:ietf:bcp:47"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

LEAD_ROLE = "lead"
# carehub's own extensions: data FHIR R4 has no element for.
EXT_TASK_ASSIGNEE = f"{_CARE_HUB}:extension:task-assignee"
EXT_TASK_FOR_PATIENT = f"{_CARE_HUB}:extension:task-for-patient"
EXT_TASK_ESCALATION = f"{_CARE_HUB}:extension:task-escalation-level"
EXT_ACTIVITY_KIND = f"{_CARE_HUB}:extension:care-plan-activity-kind"
EXT_ACTIVITY_STATUS = f"{_CARE_HUB}:extension:care-plan-activity-status"
EXT_VIDEO_LINK = f"{_CARE_HUB}:extension:appointment-video-link"
EXT_SHA256 = f"{_CARE_HUB}:extension:attachment-sha256"

_MRN_SYSTEM = re.compile(r"^urn:carehub:tenant:[^:]+:mrn$")
_REFERENCE = re.compile(r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def mrn_system(tenant_id: uuid.UUID) -> str:
    return f"urn:carehub:tenant:{tenant_id}:mrn"


def is_mrn_system(system: str | None) -> bool:
    return bool(system and _MRN_SYSTEM.match(system))


def instant(value: datetime) -> str:
    """A FHIR instant/dateTime in UTC (``Z``); carehub's datetimes are always timezone-aware."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference(resource_type: str, resource_id: uuid.UUID, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref


def practitioner(user_id: uuid.UUID, names: Mapping[uuid.UUID, str]) -> dict[str, Any]:
    """A staff user: ``Practitioner/<user id>``, with their name when they belong to the tenant."""
    return reference("Practitioner", user_id, names.get(user_id))


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        value["text"] = text
    return value


def label(code: str) -> str:
    """A display for one of our codes: ``in_progress`` -> ``In progress``."""
    words = code.replace("_", " ").replace("-", " ")
    return words[:1].upper() + words[1:]


def meta(updated_at: datetime | None, version: int | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {}
    if version is not None:
        value["versionId"] = str(version)
    if updated_at is not None:
        value["lastUpdated"] = instant(updated_at)
    return value


def compact(resource: dict[str, Any]) -> dict[str, Any]:
    """Drop empty elements (FHIR forbids empty values, objects and arrays)."""
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


# ---------------------------------------------------------------------------------------------------------------
# Reading FHIR


def field_path(resource_type: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a FHIR path: ``('participant', 0)`` -> ``Appointment.participant[0]``."""
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        else:
            path += f".{part}"
    return path


MAX_DEPTH = 32


def _plain_json(node: Any, path: str, depth: int) -> None:
    """FHIR JSON has no nulls (an absent element is left out) and carehub reads no deeper than ``MAX_DEPTH``."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels", field=path)
    if node is None:
        raise InvalidInput("null is not a FHIR value: leave the element out", field=path)
    if isinstance(node, dict):
        for key, value in node.items():
            _plain_json(value, f"{path}.{key}", depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _plain_json(value, f"{path}[{index}]", depth + 1)


def validate(resource: Any, resource_type: str) -> dict[str, Any]:
    """Check ``resource`` against the FHIR R4 (R4B model) definition of ``resource_type``; return it.

    Raises:
        InvalidInput: naming the FHIR path of each problem (the first one as ``field``).
    """
    if not isinstance(resource, dict):
        raise InvalidInput(f"a {resource_type} resource must be a JSON object", field=resource_type)
    if resource.get("resourceType") != resource_type:
        raise InvalidInput(f"resourceType must be {resource_type}", field=f"{resource_type}.resourceType")
    _plain_json(resource, resource_type, 0)
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = [(field_path(resource_type, tuple(e["loc"])), str(e["msg"]).strip()) for e in exc.errors()]
        first_field, first_message = problems[0]
        raise InvalidInput(
            f"not a valid FHIR {resource_type}: {first_field}: {first_message}", field=first_field, problems=problems
        ) from None
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        # The model library fails this way on some malformed input (e.g. an unknown contained resourceType).
        raise InvalidInput(f"not a valid FHIR {resource_type} ({type(exc).__name__})", field=resource_type) from None
    return resource


def parse_reference(value: Any, field: str, *types: str) -> tuple[str, str]:
    """The (type, id) a Reference points to (relative or absolute URL), which must be one of ``types``."""
    target = value.get("reference") if isinstance(value, dict) else None
    found = _REFERENCE.search(target) if isinstance(target, str) else None
    if found is None or found["type"] not in types:
        raise InvalidInput(f"expected a reference to {' or '.join(types)}", field=field)
    return found["type"], found["id"]


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("not a carehub id", field=field) from None


def reference_id(value: Any, field: str, resource_type: str) -> uuid.UUID:
    """The carehub id of a reference to ``resource_type`` (``Patient/<id>``)."""
    _, found = parse_reference(value, f"{field}.reference" if isinstance(value, dict) else field, resource_type)
    return parse_uuid(found, f"{field}.reference")


def full_date(value: Any, field: str) -> str:
    """A FHIR date that must be a whole day (``YYYY-MM-DD``); FHIR also allows ``YYYY`` and ``YYYY-MM``."""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidInput("a full date (YYYY-MM-DD) is required", field=field) from None


def aware_datetime(value: Any, field: str) -> str:
    """A FHIR dateTime with a time and zone, as ISO 8601 in UTC."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in str(value):
        raise InvalidInput("a date and time with a time zone is required", field=field)
    try:
        return instant(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before the first instant in UTC
        raise InvalidInput("a time between the years 1900 and 2200, please", field=field) from None


def codes(value: Any, system: str) -> list[str]:
    """The codes of ``system`` in a CodeableConcept."""
    if not isinstance(value, dict):
        return []
    return [c["code"] for c in value.get("coding", []) if c.get("system") == system and c.get("code")]


def extension(resource: Mapping[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension", []) if e.get("url") == url), None)
