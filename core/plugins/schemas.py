"""What the plugin API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec


class EnablementIn(msgspec.Struct, forbid_unknown_fields=True):
    """Turn a plugin on (or off) for the tenant with this configuration. A sensitive key left out keeps its stored
    value; ``null`` removes it."""

    enabled: bool = True
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    allowed: bool
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class PluginStatus(msgspec.Struct):
    """How a plugin's calls for this tenant have gone (the circuit breaker and the last error)."""

    failures: int
    breaker_open_until: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None
    health_ok: bool | None
    health_detail: str | None
    synced_at: datetime | None


class PluginOut(msgspec.Struct):
    name: str
    version: str
    title: str
    description: str
    vendor: str | None
    source: str
    hooks: list[str]
    data_categories: list[str]
    outbound_hosts: list[str]
    config_schema: dict[str, Any]
    per_tenant: bool
    allowed: bool  # by the network admin
    enabled: bool  # for this tenant
    config: dict[str, Any]  # without its secrets
    secrets_set: list[str]  # which sensitive keys hold a value (never the values)
    status: PluginStatus | None


class PolicyOut(msgspec.Struct):
    plugin: str
    allowed: bool
    reason: str | None
    updated_at: datetime
