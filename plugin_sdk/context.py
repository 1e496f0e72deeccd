"""What a hook is given besides its payload: the tenant, its own configuration, an HTTP client and a clock."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from plugin_sdk.payloads import TenantInfo


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PluginContext:
    """``config`` is this plugin's configuration for this tenant only (its secrets decrypted), never another
    plugin's. ``http`` calls only the hosts the plugin may call (:mod:`plugin_sdk.outbound`). ``tenant`` is None
    for network-wide hooks."""

    plugin: str
    tenant: TenantInfo | None
    config: Mapping[str, Any]
    http: httpx.AsyncClient
    clock: Callable[[], datetime] = _utcnow
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("carehub.plugin"))

    def now(self) -> datetime:
        return self.clock()
