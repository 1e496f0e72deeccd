"""A plugin's manifest: who it is, which SDK it needs, what it may receive and call, and its configuration.

A plugin module declares ``MANIFEST = Manifest(...)``. The host reads it when it loads the plugin and refuses a
plugin whose manifest is wrong or whose SDK range excludes this SDK, naming the plugin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from plugin_sdk.payloads import DATA_CATEGORIES
from plugin_sdk.version import SDK_VERSION

_REQUIRED = re.compile(r"^'(.+)' is a required property$")

NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ConfigProblem:
    """One reason a configuration is refused: ``path`` is where (``credentials.client_id``; ``""`` the whole)."""

    path: str
    message: str


@dataclass(frozen=True)
class Manifest:
    name: str  # lower case, unique: "ehr_fhir"
    version: str  # the plugin's own version (PEP 440)
    sdk: str  # the SDK versions it works with, a PEP 440 range: ">=1.0,<2"
    title: str
    description: str = ""
    vendor: str | None = None
    # The hooks it implements (the host checks this against the module's hookimpls).
    hooks: tuple[str, ...] = ()
    # A JSON Schema (draft 2020-12) for its per-tenant configuration. A top-level property with
    # ``"sensitive": true`` is a secret: stored encrypted, never returned by the API.
    config_schema: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_SCHEMA))
    # The data categories it may receive and write (carehub's consent categories); a sensitive label (behavioral
    # health, substance use disorder, social needs) only if named here.
    data_categories: tuple[str, ...] = ()
    # Hosts it may call (``*.example.org`` for subdomains), and the configuration keys holding URLs whose hosts
    # it may call too (a tenant's EHR base URL).
    outbound_hosts: tuple[str, ...] = ()
    outbound_config_keys: tuple[str, ...] = ()
    # Network-wide plugins (notification channels) read operator settings, ``CAREHUB_CHANNEL_<KEY>``: the keys
    # named here, lower case, and no others.
    operator_settings: tuple[str, ...] = ()
    # False: configured by the operator for the whole network, not enabled per tenant.
    per_tenant: bool = True

    @property
    def sensitive_keys(self) -> tuple[str, ...]:
        properties = self.config_schema.get("properties") or {}
        return tuple(k for k, v in properties.items() if isinstance(v, Mapping) and v.get("sensitive") is True)

    def supports(self, sdk_version: str = SDK_VERSION) -> bool:
        return Version(sdk_version) in SpecifierSet(self.sdk)

    def problems(self, known_hooks: set[str]) -> list[str]:
        """What is wrong with this manifest itself (empty when it is sound)."""
        found: list[str] = []
        if not NAME.match(self.name):
            found.append(f"name {self.name!r} must be 2-40 lower-case letters, digits or _")
        try:
            SpecifierSet(self.sdk)
        except InvalidSpecifier:
            found.append(f"sdk {self.sdk!r} is not a version range such as '>=1.0,<2'")
        found += [f"hook {h!r} is not a carehub hook" for h in self.hooks if h not in known_hooks]
        found += [f"data category {c!r} is unknown" for c in self.data_categories if c not in DATA_CATEGORIES]
        try:
            jsonschema.Draft202012Validator.check_schema(dict(self.config_schema))
        except jsonschema.SchemaError as exc:
            found.append(f"config_schema is not a valid JSON Schema: {exc.message}")
        return found

    def config_problems(self, config: Mapping[str, Any]) -> list[ConfigProblem]:
        """Why ``config`` does not fit the schema, each at its path; empty when it does."""
        validator = jsonschema.Draft202012Validator(dict(self.config_schema))
        problems = []
        for error in sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.absolute_path))):
            path = ".".join(str(p) for p in error.absolute_path)
            if error.validator == "required" and isinstance(error.validator_value, list):
                # One error per missing key, each with the whole list: the key is the one its message names.
                named = _REQUIRED.match(error.message)
                missing = [k for k in error.validator_value if isinstance(error.instance, Mapping)]
                missing = [k for k in missing if k not in error.instance]
                key = named.group(1) if named and named.group(1) in missing else (missing[0] if missing else None)
                if key:
                    path = ".".join(filter(None, [path, key]))
            elif error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
                allowed = set((error.schema.get("properties") or {}).keys())
                extra = sorted(k for k in error.instance if k not in allowed)
                if extra:
                    path = ".".join(filter(None, [path, extra[0]]))
            problems.append(ConfigProblem(path=path, message=error.message))
        return problems
