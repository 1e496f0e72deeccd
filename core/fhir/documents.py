"""The FHIR documents around resources: searchset Bundles, the CapabilityStatement and OperationOutcomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from core.fhir.common import FHIR_VERSION, MEDIA_TYPE, RESOURCE_TYPES
from core.fhir.service import MAX_COUNT, PATIENT_PARAMS, SearchPage

# When this capability statement last changed (FHIR requires a date).
CAPABILITIES_DATE = "2026-01-01"
# The issue type (http://hl7.org/fhir/issue-type) of each HTTP error status.
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "multiple-matches",
    413: "too-costly",
    422: "invalid",
    429: "throttled",
}


def searchset(
    page: SearchPage,
    fhir_base: str,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    *,
    count: int,
    offset: int,
) -> dict[str, Any]:
    """A searchset Bundle of one page, with ``self`` and, when more remain, ``next`` links (``_count``/``_offset``).
    Included resources follow the matches (search mode ``include``)."""

    def url(at: int) -> str:
        return f"{fhir_base}/{resource_type}?{urlencode([*params, ('_count', count), ('_offset', at)])}"

    links = [{"relation": "self", "url": url(offset)}]
    if count and offset + count < page.total:
        links.append({"relation": "next", "url": url(offset + count)})
    if count and offset:
        # The page before this one; past the end, the last page that has entries.
        links.append({"relation": "previous", "url": url(max(min(offset, page.total) - count, 0))})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links}
    entries = [
        {
            "fullUrl": f"{fhir_base}/{item.resource['resourceType']}/{item.resource['id']}",
            "resource": item.resource,
            "search": {"mode": mode},
        }
        for items, mode in ((page.found, "match"), (page.included, "include"))
        for item in items
    ]
    if entries:
        bundle["entry"] = entries
    return bundle


def capability_statement(fhir_base: str) -> dict[str, Any]:
    """What carehub's FHIR endpoint does: read and search (by patient or id) of each served type, with includes of
    the patient and, on Patient searches, of the resources about the patient; create of Consents (conditional on an
    identifier); JSON, bearer tokens."""
    search_params = [
        {
            "name": "patient",
            "type": "reference",
            "documentation": "the patient (an id or Patient/<id>); required unless _id is given",
        },
        {"name": "_id", "type": "token", "documentation": "the resource's id"},
    ]
    resources = []
    for resource_type in RESOURCE_TYPES:
        interactions = [{"code": "read"}, {"code": "search-type"}]
        resource: dict[str, Any] = {"type": resource_type}
        if resource_type == "Consent":
            interactions.append({"code": "create"})
            resource["conditionalCreate"] = True
        resource["interaction"] = interactions
        resource["searchParam"] = list(search_params)
        if resource_type == "Patient":
            resource["searchRevInclude"] = [f"{t}:{p}" for t, ps in PATIENT_PARAMS.items() for p in ps]
        else:
            resource["searchInclude"] = [f"{resource_type}:{p}" for p in PATIENT_PARAMS[resource_type]]
        resources.append(resource)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITIES_DATE,
        "publisher": "carehub",
        "kind": "instance",
        "software": {"name": "carehub"},
        "implementation": {"description": "carehub care coordination hub (FHIR R4)", "url": fhir_base},
        "fhirVersion": FHIR_VERSION,
        "format": [MEDIA_TYPE, "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": f"Searches page with _count (at most {MAX_COUNT}) and _offset.",
                "security": {
                    "service": [{"text": "Bearer token (JWT) from POST /api/v1/auth/token (staff members)"}],
                    "description": "Every request but this one needs a staff member's bearer token; records are "
                    "those of the token's tenant.",
                },
                "resource": resources,
            }
        ],
    }


def operation_outcome(status: int, detail: str, fields: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """An error as FHIR answers it: one issue per problem field (``expression``), or one for the whole request."""
    severity = "fatal" if status >= 500 else "error"
    code = ISSUE_TYPES.get(status, "exception" if status >= 500 else "processing")
    if fields:
        issues = [
            {"severity": severity, "code": code, "diagnostics": message, "expression": [field]}
            for field, message in fields
        ]
    else:
        issues = [{"severity": severity, "code": code, "diagnostics": detail}]
    return {"resourceType": "OperationOutcome", "issue": issues}
