"""The plugin's per-tenant configuration: its JSON Schema (the host validates against it) and a typed view of it.

Every key is optional; an empty configuration reads a single-facility feed whose medical record numbers carry no
assigning authority, with times in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The system of a PID-3 identifier that names no assigning authority (CX-4 empty).
DEFAULT_IDENTIFIER_SYSTEM = "urn:carehub:hl7v2:mrn"
# The system of an identifier whose assigning authority is not in ``assigning_authority_systems``: this prefix and
# the authority's namespace id (``urn:carehub:hl7v2:authority:GOODHOSP``), so that each authority stays apart.
UNMAPPED_AUTHORITY_PREFIX = "urn:carehub:hl7v2:authority:"
DEFAULT_APPLICATION = "CAREHUB"
DEFAULT_CRITICAL_FLAGS = ("HH", "LL", "AA")
DEFAULT_OBSERVATION_TYPES = ("OBS", "OBV")

_URI = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", "maxLength": 255}
# A plain HD namespace id: no HL7 delimiter, no line break (it goes into the ACK's MSH).
_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[^|^~\\&\r\n]+$"}
_FLAGS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 10}, "uniqueItems": True}

CONFIG_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "identifier_system": {
            **_URI,
            "default": DEFAULT_IDENTIFIER_SYSTEM,
            "description": "The system URI of PID-3 identifiers whose assigning authority (CX-4) is empty",
        },
        "assigning_authority_systems": {
            "type": "object",
            "propertyNames": {"minLength": 1, "maxLength": 64},
            "additionalProperties": _URI,
            "description": "The system URI of each assigning authority (CX-4 namespace or universal id)",
        },
        "sending_facility": {**_NAME, "description": "The only MSH-4 accepted; a message from another is refused"},
        "receiving_application": {**_NAME, "description": "The ACK's MSH-3 (default: the message's MSH-5)"},
        "receiving_facility": {**_NAME, "description": "The ACK's MSH-4 (default: the message's MSH-6)"},
        "timezone": {
            "type": "string",
            "pattern": r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
            "default": "UTC",
            "description": "The IANA time zone of HL7 times that carry no offset",
        },
        "critical_flags": {
            **_FLAGS,
            "default": list(DEFAULT_CRITICAL_FLAGS),
            "description": "The OBX-8 abnormal flags that make a result critical",
        },
        "observation_patient_types": {
            **_FLAGS,
            "default": list(DEFAULT_OBSERVATION_TYPES),
            "description": "The PV1-18 patient types (or PV1-2 classes) that make a stay an observation stay",
        },
        "label_diagnoses": {
            "type": "boolean",
            "default": True,
            "description": (
                "Label a stay by its DG1 diagnoses (ICD-10-CM F10-F19 substance use disorder, psychiatric F codes "
                "behavioural health, Z55-Z65 social needs), so that other facilities see it only as consent allows"
            ),
        },
    },
}


class ConfigError(ValueError):
    """The configuration passed the schema but cannot be used (an unknown time zone)."""


@dataclass(frozen=True)
class Settings:
    """One tenant's configuration, valid against :data:`CONFIG_SCHEMA`, with the defaults filled in."""

    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    authority_systems: Mapping[str, str] = field(default_factory=dict)
    sending_facility: str | None = None
    receiving_application: str | None = None
    receiving_facility: str | None = None
    timezone: str = "UTC"
    critical_flags: frozenset[str] = frozenset(DEFAULT_CRITICAL_FLAGS)
    observation_types: frozenset[str] = frozenset(DEFAULT_OBSERVATION_TYPES)
    label_diagnoses: bool = True

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> Settings:
        flags = config.get("critical_flags")
        observation = config.get("observation_patient_types")
        return cls(
            identifier_system=config.get("identifier_system") or DEFAULT_IDENTIFIER_SYSTEM,
            authority_systems=dict(config.get("assigning_authority_systems") or {}),
            sending_facility=config.get("sending_facility"),
            receiving_application=config.get("receiving_application"),
            receiving_facility=config.get("receiving_facility"),
            timezone=config.get("timezone") or "UTC",
            critical_flags=frozenset(f.upper() for f in (DEFAULT_CRITICAL_FLAGS if flags is None else flags)),
            observation_types=frozenset(
                t.upper() for t in (DEFAULT_OBSERVATION_TYPES if observation is None else observation)
            ),
            label_diagnoses=bool(config.get("label_diagnoses", True)),
        )

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone; :class:`ConfigError` when the name is not a known IANA zone."""
        return _zone(self.timezone)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"the configured timezone {name!r} is not a known IANA time zone") from exc
