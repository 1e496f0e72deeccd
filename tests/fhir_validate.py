"""Check FHIR JSON the way a receiving system would: against the FHIR R4 definitions (the R4B models of
fhir.resources, which share R4's elements for every resource carehub produces), plus the rules those models do not
enforce: no empty elements, references that point at a type and id (or a contained resource), and every contained
resource referenced."""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

_REFERENCE = re.compile(r"^(#[A-Za-z0-9\-.]{1,64}|(https?://.+/)?[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})$")
# Documents about a request rather than records: they need no id.
_NO_ID = {"CapabilityStatement", "OperationOutcome"}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` (a Bundle's entries too) and return it; raise AssertionError/ValidationError if not."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    _check(resource, resource["resourceType"])
    if resource["resourceType"] == "Bundle":
        for entry in resource.get("entry", []):
            inner = entry["resource"]
            assert entry["fullUrl"].endswith(f"/{inner['resourceType']}/{inner['id']}"), entry["fullUrl"]
            _check_resource(inner)
    else:
        _check_resource(resource)
    return resource


def _check_resource(resource: dict[str, Any]) -> None:
    if resource["resourceType"] not in _NO_ID:
        assert _ID.match(resource.get("id", "")), f"{resource['resourceType']} needs a FHIR id"
    references = set(_references(resource))
    for inner in resource.get("contained", []):
        assert f"#{inner['id']}" in references, f"contained {inner['id']} is not referenced"


def _check(value: Any, path: str) -> None:
    assert value not in (None, "", [], {}), f"{path} is empty (FHIR forbids empty elements)"
    if isinstance(value, dict):
        for key, item in value.items():
            _check(item, f"{path}.{key}")
            if key == "reference" and isinstance(item, str):
                assert _REFERENCE.match(item), f"{path}.reference {item!r} is not a FHIR reference"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []
