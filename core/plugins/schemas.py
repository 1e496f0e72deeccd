"""What the plugin API takes and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

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
    health_at: datetime | None  # when the last health check answered
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


class HealthOut(msgspec.Struct):
    """The plugin's answer to a health check for this tenant (or why it could not answer: ``ok`` false)."""

    plugin: str
    ok: bool
    detail: str | None
    checked_at: datetime


class PushOut(msgspec.Struct):
    """A care plan or task as last sent to the plugin's system: ``sent`` once the record as it stands was
    accepted (``external_id`` and ``location`` are where that system keeps it), ``failed`` while the last try
    failed (the job is retried with backoff; ``last_error`` says why)."""

    resource_type: str
    resource_id: uuid.UUID
    status: Literal["sent", "failed"]
    version: int | None  # a care plan's version number
    record_updated_at: datetime  # the record as last tried
    external_id: str | None
    location: str | None
    pushed_at: datetime | None  # the last success
    tried_at: datetime
    attempts: int  # calls for the record as last tried
    last_error: str | None
