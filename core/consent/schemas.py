"""Input and output shapes of consents, break-the-glass and the network default (msgspec, unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.inputs import SAFE_LINE, SAFE_TEXT, AwareDateTime

Category = Literal[
    "demographics",
    "care_plan",
    "tasks_appointments",
    "messages",
    "clinical_results",
    "behavioral_health",
    "substance_use_disorder",
    "social_needs",
]
Purpose = Literal["treatment", "care_coordination", "payment", "research"]
GranteeKind = Literal["tenant", "treating", "network"]
SourceKind = Literal["scanned_form", "verbal", "electronic", "portal"]
ConsentDecision = Literal["permit", "deny"]
NetworkDefault = Literal["opt_in", "opt_out"]
Text = Annotated[str, msgspec.Meta(max_length=1000, pattern=SAFE_TEXT)]


class Grantee(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who may see: one tenant (``tenant_id``), the treating facilities holding a record of the person, or every
    tenant of the network."""

    kind: GranteeKind
    tenant_id: uuid.UUID | None = None


class ConsentIdentifier(msgspec.Struct, forbid_unknown_fields=True):
    system: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_LINE)]


class ConsentCreate(msgspec.Struct, forbid_unknown_fields=True):
    grantee: Grantee
    categories: Annotated[list[Category], msgspec.Meta(min_length=1, max_length=8)]
    purposes: Annotated[list[Purpose], msgspec.Meta(min_length=1, max_length=4)]
    period_start: AwareDateTime
    source_kind: SourceKind
    decision: ConsentDecision = "permit"
    period_end: AwareDateTime | None = None
    source_reference: Annotated[str, msgspec.Meta(max_length=500, pattern=SAFE_TEXT)] | None = None
    note: Text | None = None
    identifier: ConsentIdentifier | None = None


class ConsentRevoke(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=SAFE_TEXT)]


class GranteeOut(msgspec.Struct):
    kind: str
    tenant_id: uuid.UUID | None
    tenant_name: str | None


class ConsentOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID | None
    decision: str
    grantee: GranteeOut
    categories: list[str]
    purposes: list[str]
    period_start: datetime
    period_end: datetime | None
    # active | revoked | expired, as of the answer.
    status: str
    source_kind: str
    source_reference: str | None
    note: str | None
    recorded_by: uuid.UUID | None
    recorded_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    identifier: ConsentIdentifier | None


class NetworkConsentDefault(msgspec.Struct, forbid_unknown_fields=True):
    consent_default: NetworkDefault


class BreakGlassCreate(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=10, max_length=500, pattern=SAFE_TEXT)]


class BreakGlassOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    reason: str
    opened_at: datetime
    expires_at: datetime
    categories: list[str]


class PrimaryCareIn(msgspec.Struct, forbid_unknown_fields=True):
    primary_care: bool


class PrimaryCareOut(msgspec.Struct):
    patient_id: uuid.UUID
    primary_care: bool


class LinkSystems(msgspec.Struct, forbid_unknown_fields=True):
    """The identifier systems that link records across tenants automatically (e.g. the network id, insurers'
    member ids). Records sharing an identifier of another system are never linked without an administrator."""

    systems: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^\S+$")]],
        msgspec.Meta(max_length=20),
    ]
