"""The plugin's per-tenant configuration: its JSON Schema (the host validates against it) and a typed view of it.

Two ways to authenticate to the EHR:

- ``smart_backend``: SMART Backend Services (a signed JWT assertion exchanged for an access token at
  ``token_url``); the tenant registers the public half of ``private_jwks`` with the EHR under ``client_id``.
- ``bearer``: a static ``bearer_token`` sent with every request (test systems, proxies that authenticate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_SCOPE = (
    "system/Patient.read system/Encounter.read system/Condition.read system/Observation.read "
    "system/CarePlan.write system/Task.write"
)
DEFAULT_SYNC_MINUTES = 15
DEFAULT_PAGE_SIZE = 100
ALGORITHMS = ("RS384", "ES384")
# An http(s) URL with a host (a FHIR base may have a path; no query or fragment).
_URL = {"type": "string", "format": "uri", "pattern": r"^https?://[^/?#\s]+(/[^?#\s]*)?$"}

CONFIG_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["base_url", "auth"],
    "properties": {
        "base_url": {**_URL, "description": "The EHR's FHIR R4 base URL, e.g. https://ehr.example.org/fhir/r4"},
        "auth": {"enum": ["smart_backend", "bearer"], "description": "How carehub authenticates to the EHR"},
        "token_url": {**_URL, "description": "smart_backend: the EHR's OAuth 2.0 token endpoint"},
        "client_id": {"type": "string", "minLength": 1, "description": "smart_backend: carehub's client id"},
        "scope": {"type": "string", "minLength": 1, "default": DEFAULT_SCOPE},
        "private_jwks": {
            "type": "object",
            "sensitive": True,
            "description": "smart_backend: a JWKS holding carehub's private signing key(s)",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["kty"]}}},
        },
        "kid": {"type": "string", "minLength": 1, "description": "smart_backend: which key of private_jwks signs"},
        "alg": {"enum": list(ALGORITHMS), "description": "smart_backend: the assertion's signing algorithm"},
        "bearer_token": {"type": "string", "minLength": 1, "sensitive": True, "description": "bearer: the token"},
        "patient_identifier_system": {
            "type": "string",
            "minLength": 1,
            "description": "The system URI of the EHR's medical record numbers, listed first for a patient",
        },
        "sync_interval_minutes": {"type": "integer", "minimum": 1, "default": DEFAULT_SYNC_MINUTES},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_PAGE_SIZE},
    },
    "allOf": [
        {
            "if": {"properties": {"auth": {"const": "smart_backend"}}, "required": ["auth"]},
            "then": {"required": ["token_url", "client_id", "private_jwks"]},
        },
        {
            "if": {"properties": {"auth": {"const": "bearer"}}, "required": ["auth"]},
            "then": {"required": ["bearer_token"]},
        },
    ],
}


@dataclass(frozen=True)
class FhirConfig:
    """The configuration of one tenant, already valid against :data:`CONFIG_SCHEMA`, with defaults filled in."""

    base_url: str  # without a trailing "/"
    auth: Literal["smart_backend", "bearer"]
    token_url: str | None = None
    client_id: str | None = None
    scope: str = DEFAULT_SCOPE
    private_jwks: Mapping[str, Any] = field(default_factory=dict, repr=False)
    kid: str | None = None
    alg: str | None = None
    bearer_token: str | None = field(default=None, repr=False)
    patient_identifier_system: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> FhirConfig:
        auth = config.get("auth")
        if auth not in ("smart_backend", "bearer"):
            raise ValueError(f"auth must be smart_backend or bearer, not {auth!r}")
        return cls(
            base_url=str(config["base_url"]).rstrip("/"),
            auth=auth,
            token_url=config.get("token_url"),
            client_id=config.get("client_id"),
            scope=config.get("scope") or DEFAULT_SCOPE,
            private_jwks=config.get("private_jwks") or {},
            kid=config.get("kid"),
            alg=config.get("alg"),
            bearer_token=config.get("bearer_token"),
            patient_identifier_system=config.get("patient_identifier_system"),
            page_size=int(config.get("page_size") or DEFAULT_PAGE_SIZE),
        )
