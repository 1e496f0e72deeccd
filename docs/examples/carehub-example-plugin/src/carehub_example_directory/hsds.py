"""A page of HSDS 3.0 services (``GET /services?full=true``) as carehub's ``ServiceRecord`` values.

The page is ``{"total_items": ..., "page_number": ..., "contents": [service, ...]}``; a fully nested service
holds its ``organization``, its ``service_at_locations`` (each with its ``location`` and that location's
``addresses``), ``phones``, ``schedules``, ``languages`` and ``attributes`` (taxonomy terms). Each service at a
location is one record, as carehub's ``ServiceRecord`` is; a service without a location is one record too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugin_sdk.payloads import ServiceRecord


def service_records(page: Mapping[str, Any]) -> list[ServiceRecord]:
    records = []
    for service in page.get("contents") or []:
        for at_location in service.get("service_at_locations") or [None]:
            records.append(_record(service, at_location))
    return records


def _record(service: Mapping[str, Any], at_location: Mapping[str, Any] | None) -> ServiceRecord:
    location = (at_location or {}).get("location") or {}
    terms = [attribute.get("taxonomy_term") or {} for attribute in service.get("attributes") or []]
    return ServiceRecord(
        id=str((at_location or service)["id"]),
        name=service["name"],
        organization=(service.get("organization") or {}).get("name") or "",
        description=service.get("description"),
        categories=tuple(term["name"] for term in terms if term.get("name")),
        address=_address(location),
        phone=_first(service.get("phones") or location.get("phones"), "number"),
        url=service.get("url"),
        hours=_first(service.get("schedules"), "description"),
        languages=tuple(language["name"] for language in service.get("languages") or [] if language.get("name")),
        eligibility=service.get("eligibility_description"),
    )


def _address(location: Mapping[str, Any]) -> dict[str, str] | None:
    """The location's physical address, in carehub's keys (line, city, state, postal_code, country)."""
    for address in location.get("addresses") or []:
        if address.get("address_type", "physical") == "physical":
            found = {
                "line": address.get("address_1"),
                "city": address.get("city"),
                "state": address.get("state_province"),
                "postal_code": address.get("postal_code"),
                "country": address.get("country"),
            }
            return {key: str(value) for key, value in found.items() if value}
    return None


def _first(items: list[Mapping[str, Any]] | None, key: str) -> Any:
    return next((item[key] for item in items or [] if item.get(key)), None)
