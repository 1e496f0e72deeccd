"""Example community resource directory: finds services in an Open Referral HSDS 3.0 API.

A coordinator's search becomes ``GET {base_url}/services?search=...`` on the directory the tenant configured,
with the tenant's API key in a header; each service at a location found comes back as a ``ServiceRecord``.
``carehub_health_check`` asks the same endpoint for one service, which proves the URL and the key.
"""

from __future__ import annotations

import httpx
from plugin_sdk import Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import Health, ServiceQuery, ServiceRecord

from carehub_example_directory.hsds import service_records

API_KEY_HEADER = "X-API-Key"

MANIFEST = Manifest(
    name="example_directory",
    version="1.0.0",
    sdk=">=1.0,<2",
    title="Example resource directory (HSDS)",
    description="Community services (food, housing, transport ...) from an Open Referral HSDS 3.0 directory.",
    vendor="carehub examples",
    hooks=("carehub_directory_search", "carehub_health_check"),
    config_schema={
        "type": "object",
        "properties": {
            "base_url": {
                "type": "string",
                "pattern": "^https?://",
                "description": "The directory's HSDS API, e.g. https://api.211.example.org/hsds",
            },
            "api_key": {
                "type": "string",
                "minLength": 1,
                "sensitive": True,
                "description": "The tenant's key for that API (sent as the X-API-Key header)",
            },
        },
        "required": ["base_url", "api_key"],
        "additionalProperties": False,
    },
    # A search carries what the coordinator typed and no patient's record: no data category is needed.
    data_categories=(),
    # The plugin may call the host of the tenant's base_url, and no other.
    outbound_config_keys=("base_url",),
)


def _services_url(context: PluginContext) -> str:
    return str(context.config["base_url"]).rstrip("/") + "/services"


def _headers(context: PluginContext) -> dict[str, str]:
    return {API_KEY_HEADER: str(context.config["api_key"]), "Accept": "application/json"}


@hookimpl
async def carehub_directory_search(context: PluginContext, query: ServiceQuery) -> list[ServiceRecord]:
    """Up to ``query.limit`` services at locations whose text matches the query's text and category."""
    search = " ".join(part for part in (query.text, query.category) if part)
    # full=true: each service with its organization, locations, phones, schedules and languages nested.
    params: dict[str, str | int] = {"search": search, "page": 1, "per_page": query.limit, "full": "true"}
    response = await context.http.get(_services_url(context), params=params, headers=_headers(context))
    response.raise_for_status()  # a refused key or a broken directory is this plugin's failure, not carehub's
    return service_records(response.json())[: query.limit]


@hookimpl
async def carehub_health_check(context: PluginContext) -> Health:
    """Whether the directory answers a search with this tenant's key."""
    try:
        response = await context.http.get(
            _services_url(context), params={"page": 1, "per_page": 1}, headers=_headers(context)
        )
    except httpx.HTTPError as exc:
        return Health(ok=False, detail=f"the directory cannot be reached: {exc}")
    if response.status_code in (401, 403):
        return Health(ok=False, detail=f"the directory refused the API key ({response.status_code})")
    if response.status_code != 200:
        return Health(ok=False, detail=f"the directory answered {response.status_code}")
    total = response.json().get("total_items")
    return Health(ok=True, detail=f"{total} services listed" if isinstance(total, int) else None)
