"""FHIR R4 Consent: carehub's consents as resources, posted resources as consents, and conditional create.

A tenant sees, through FHIR as through the staff API, only the consents it recorded: another tenant's consent
about the same person would tell it where else the person is cared for. The grantee is the provision's actor with
the role "information recipient": ``Organization/<tenant id>`` for one tenant, or an identifier in carehub's
grantee-class system (``treating``, ``network``) for a class of tenants. Data categories are provision classes in
carehub's data-category system; substance use disorder records also carry HL7's ``42CFRPart2`` security label.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.consent import service as consents
from core.consent.categories import CATEGORIES, PART2, SOURCE_KINDS
from core.consent.models import Consent
from core.consent.schemas import ConsentCreate
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.fhir.common import (
    aware_datetime,
    coding,
    compact,
    concept,
    extension,
    instant,
    label,
    meta,
    parse_reference,
    parse_uuid,
    reference,
    validate,
)
from core.principal import Principal

_CARE_HUB = "urn:carehub:fhir"
DATA_CATEGORY = f"{_CARE_HUB}:data-category"
GRANTEE_CLASS = f"{_CARE_HUB}:grantee-class"
EXT_CONSENT_STATUS = f"{_CARE_HUB}:extension:consent-status"
EXT_CONSENT_SOURCE = f"{_CARE_HUB}:extension:consent-source-kind"
EXT_CONSENT_NOTE = f"{_CARE_HUB}:extension:consent-note"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

PRIVACY_SCOPE = "patient-privacy"
PATIENT_CONSENT = "59284-0"
RECIPIENT = "IRCP"
PART2_LABEL = "42CFRPart2"
# The policy a permit or a refusal follows (HL7 ActConsentDirective).
POLICY_RULES = {"permit": "OPTIN", "deny": "OPTOUT"}
# carehub's purposes of use as HL7 ActReason codes.
PURPOSES = {"treatment": "TREAT", "care_coordination": "CAREMGT", "payment": "HPAYMT", "research": "HRESCH"}
PURPOSE_DISPLAYS = {
    "TREAT": "treatment",
    "CAREMGT": "care management",
    "HPAYMT": "healthcare payment",
    "HRESCH": "healthcare research",
}
GRANTEE_CLASSES = ("treating", "network")
DEFAULT_SOURCE = "electronic"
# A source reference that is a URI goes in the attachment's url; any other text in its title.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")


class PreconditionFailed(DomainError):
    """A conditional create whose condition matches more than one resource."""

    status = 412
    title = "Precondition failed"


# ---------------------------------------------------------------------------------------------------------------
# carehub -> FHIR


def consent_to_fhir(
    consent: Consent, patient_id: uuid.UUID, names: Mapping[uuid.UUID, str], now: datetime
) -> dict[str, Any]:
    """``patient_id`` is this tenant's record of the consent's person. A revoked or expired consent is
    ``inactive``; carehub's own status (active, revoked, expired) is in an extension, the expiry in the period."""
    status = consents.status_at(consent, now)
    extensions: list[dict[str, Any]] = [
        {"url": EXT_CONSENT_STATUS, "valueCode": status},
        {"url": EXT_CONSENT_SOURCE, "valueCode": consent.source_kind},
    ]
    if consent.note:
        extensions.append({"url": EXT_CONSENT_NOTE, "valueString": consent.note})
    source: dict[str, Any] | None = None
    if consent.source_reference:
        is_uri = _URI.match(consent.source_reference)
        source = {"url": consent.source_reference} if is_uri else {"title": consent.source_reference}
    if consent.grantee_kind == "tenant" and consent.grantee_tenant_id is not None:
        grantee = reference("Organization", consent.grantee_tenant_id, names.get(consent.grantee_tenant_id))
    else:
        grantee = {"identifier": {"system": GRANTEE_CLASS, "value": consent.grantee_kind}}
    security = [coding(ACT_CODE, PART2_LABEL, "42 CFR Part2")] if PART2 in consent.categories else []
    provision = compact(
        {
            "type": consent.decision,
            "period": compact(
                {
                    "start": instant(consent.period_start),
                    "end": instant(consent.period_end) if consent.period_end else None,
                }
            ),
            "actor": [{"role": concept(PARTICIPATION_TYPE, RECIPIENT, "information recipient"), "reference": grantee}],
            "securityLabel": security,
            "purpose": [coding(ACT_REASON, PURPOSES[p], PURPOSE_DISPLAYS[PURPOSES[p]]) for p in consent.purposes],
            "class": [coding(DATA_CATEGORY, c, label(c)) for c in consent.categories],
        }
    )
    identifiers = []
    if consent.identifier_system and consent.identifier_value:
        identifiers.append({"system": consent.identifier_system, "value": consent.identifier_value})
    return compact(
        {
            "resourceType": "Consent",
            "id": str(consent.id),
            "meta": meta(consent.revoked_at or consent.recorded_at),
            "extension": extensions,
            "identifier": identifiers,
            "status": "active" if status == "active" else "inactive",
            "scope": concept(CONSENT_SCOPE, PRIVACY_SCOPE, "Privacy Consent"),
            "category": [concept(LOINC, PATIENT_CONSENT, "Patient consent")],
            "patient": reference("Patient", patient_id),
            "dateTime": instant(consent.recorded_at),
            "performer": [reference("Patient", patient_id)],
            "organization": [reference("Organization", consent.recorded_tenant_id)],
            "sourceAttachment": source,
            "policyRule": concept(ACT_CODE, POLICY_RULES[consent.decision]),
            "provision": provision,
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# FHIR -> carehub


def _codings(value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path}[{i}]", c) for i, c in enumerate(value or []) if isinstance(c, dict)]


def _grantee(provision: Mapping[str, Any]) -> dict[str, Any]:
    path = "Consent.provision.actor"
    actors = [a for a in provision.get("actor", []) if RECIPIENT in _codes(a.get("role"), PARTICIPATION_TYPE)]
    if len(actors) != 1:
        raise InvalidInput(
            f"name exactly one recipient: an actor with the role {RECIPIENT} ({PARTICIPATION_TYPE})", field=path
        )
    index = provision["actor"].index(actors[0])
    ref = actors[0].get("reference", {})
    ident = ref.get("identifier")
    if "reference" not in ref and isinstance(ident, dict) and ident.get("system") == GRANTEE_CLASS:
        if ident.get("value") not in GRANTEE_CLASSES:
            raise InvalidInput(
                f"a grantee class is one of {', '.join(GRANTEE_CLASSES)}",
                field=f"{path}[{index}].reference.identifier.value",
            )
        return {"kind": ident["value"]}
    _, tenant = parse_reference(ref, f"{path}[{index}].reference", "Organization")
    return {"kind": "tenant", "tenant_id": str(parse_uuid(tenant, f"{path}[{index}].reference"))}


def _codes(value: Any, system: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [c["code"] for c in value.get("coding", []) if c.get("system") == system and c.get("code")]


def consent_from_fhir(resource: Any) -> tuple[uuid.UUID, ConsentCreate]:
    """The patient (a carehub id, not yet checked) and the consent a posted Consent records.

    Raises:
        InvalidInput: naming the FHIR path of what is missing or unknown.
    """
    try:
        return _consent_from_fhir(resource)
    except InvalidInput:
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"carehub cannot read this Consent ({type(exc).__name__})", field="Consent") from None


def _consent_from_fhir(resource: Any) -> tuple[uuid.UUID, ConsentCreate]:
    validate(resource, "Consent")
    if resource["status"] != "active":
        raise InvalidInput("a new consent is active", field="Consent.status")
    if PRIVACY_SCOPE not in _codes(resource["scope"], CONSENT_SCOPE):
        raise InvalidInput(f"carehub records {PRIVACY_SCOPE} consents ({CONSENT_SCOPE})", field="Consent.scope")
    if "patient" not in resource:
        raise InvalidInput("the patient is required", field="Consent.patient")
    _, patient = parse_reference(resource["patient"], "Consent.patient.reference", "Patient")
    patient_id = parse_uuid(patient, "Consent.patient.reference")
    provision = resource.get("provision")
    if not isinstance(provision, dict):
        raise InvalidInput("the provision (what is permitted or denied) is required", field="Consent.provision")
    decision = provision.get("type")
    if decision not in ("permit", "deny"):
        raise InvalidInput("permit or deny", field="Consent.provision.type")
    start = provision.get("period", {}).get("start")
    if start is None:
        raise InvalidInput("the consent's start is required", field="Consent.provision.period.start")
    body: dict[str, Any] = {
        "decision": decision,
        "period_start": aware_datetime(start, "Consent.provision.period.start"),
    }
    body["grantee"] = _grantee(provision)
    end = provision["period"].get("end")
    if end is not None:
        body["period_end"] = aware_datetime(end, "Consent.provision.period.end")
    purposes = []
    for path, found in _codings(provision.get("purpose"), "Consent.provision.purpose"):
        ours = next((k for k, v in PURPOSES.items() if v == found.get("code")), None)
        if found.get("system") != ACT_REASON or ours is None:
            raise InvalidInput(f"a purpose is one of {', '.join(PURPOSES.values())} ({ACT_REASON})", field=path)
        purposes.append(ours)
    if not purposes:
        raise InvalidInput("at least one purpose of use is required", field="Consent.provision.purpose")
    categories = []
    for path, found in _codings(provision.get("class"), "Consent.provision.class"):
        if found.get("system") != DATA_CATEGORY or found.get("code") not in CATEGORIES:
            raise InvalidInput(f"a data category is one of {', '.join(CATEGORIES)} ({DATA_CATEGORY})", field=path)
        categories.append(found["code"])
    labels = {c.get("code") for _, c in _codings(provision.get("securityLabel"), "") if c.get("system") == ACT_CODE}
    if PART2_LABEL in labels and PART2 not in categories:
        categories.append(PART2)
    if not categories:
        raise InvalidInput("at least one data category is required", field="Consent.provision.class")
    body["purposes"] = list(dict.fromkeys(purposes))
    body["categories"] = list(dict.fromkeys(categories))
    source_kind = (extension(resource, EXT_CONSENT_SOURCE) or {}).get("valueCode", DEFAULT_SOURCE)
    if source_kind not in SOURCE_KINDS:
        raise InvalidInput(f"a source is one of {', '.join(SOURCE_KINDS)}", field="Consent.extension(source-kind)")
    body["source_kind"] = source_kind
    attachment = resource.get("sourceAttachment", {})
    source_reference = attachment.get("url") or attachment.get("title")
    if source_reference:
        body["source_reference"] = source_reference
    note = (extension(resource, EXT_CONSENT_NOTE) or {}).get("valueString")
    if note:
        body["note"] = note
    identifiers = [i for i in resource.get("identifier", []) if i.get("system") and i.get("value")]
    if identifiers:
        body["identifier"] = {"system": identifiers[0]["system"], "value": identifiers[0]["value"]}
    try:
        return patient_id, msgspec.convert(body, ConsentCreate)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"not a consent carehub can record: {exc}", field=_fhir_field(str(exc))) from None


# Where each field of a consent comes from in a FHIR Consent.
FHIR_FIELDS = {
    "grantee": "Consent.provision.actor",
    "categories": "Consent.provision.class",
    "purposes": "Consent.provision.purpose",
    "period_start": "Consent.provision.period.start",
    "period_end": "Consent.provision.period.end",
    "source_kind": "Consent.extension(source-kind)",
    "source_reference": "Consent.sourceAttachment",
    "note": "Consent.extension(note)",
    "identifier": "Consent.identifier",
    "patient_id": "Consent.patient",
    "decision": "Consent.provision.type",
}


def _fhir_field(text: str) -> str:
    found = re.search(r"\$\.(\w+)", text)
    name = found.group(1) if found else ""
    return FHIR_FIELDS.get(name, "Consent")


def _fhir_error(exc: DomainError) -> DomainError:
    """The service's error with the field named as a FHIR path."""
    field = FHIR_FIELDS.get((exc.field or "").split(".")[0], "Consent") if exc.field else None
    exc.field = field
    return exc


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing


async def render(session: AsyncSession, consent: Consent, patient_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    names = await consents.tenant_names(session, {consent.grantee_tenant_id} if consent.grantee_tenant_id else set())
    return consent_to_fhir(consent, patient_id, names, now)


def parse_if_none_exist(header: str) -> tuple[str | None, str]:
    """``identifier=[system|]value`` (URL-encoded): the only condition carehub takes for a conditional create."""
    name, _, token = header.strip().partition("=")
    token = unquote(token)
    if name != "identifier" or not token or "&" in token:
        raise InvalidInput("the condition must be identifier=system|value", field="If-None-Exist", source="header")
    system, bar, value = token.partition("|")
    if not bar:
        return None, token
    if not value:
        raise InvalidInput("the identifier needs a value", field="If-None-Exist", source="header")
    return system or None, value


async def _matches(session: AsyncSession, tenant_id: uuid.UUID, system: str | None, value: str) -> list[Consent]:
    """This tenant's consents with the identifier: another tenant's never match (they are not there for it)."""
    statement = select(Consent).where(Consent.recorded_tenant_id == tenant_id, Consent.identifier_value == value)
    if system is not None:
        statement = statement.where(Consent.identifier_system == system)
    return list(await session.scalars(statement.order_by(Consent.recorded_at, Consent.id).limit(2)))


async def create(
    session: AsyncSession, principal: Principal, resource: Any, if_none_exist: str | None
) -> tuple[bool, Consent, uuid.UUID]:
    """Record a posted Consent: (created, the consent, this tenant's patient).

    With ``If-None-Exist``, an existing consent of this tenant matching the identifier is answered instead (more
    than one: :class:`PreconditionFailed`); nothing of another tenant is ever matched.
    """
    principal.require("consents", "write")
    assert principal.tenant_id is not None
    condition = parse_if_none_exist(if_none_exist) if if_none_exist is not None else None
    patient_id, data = consent_from_fhir(resource)
    if condition is not None:
        found = await _matches(session, principal.tenant_id, *condition)
        if len(found) > 1:
            raise PreconditionFailed("the condition matches more than one consent", field="If-None-Exist")
        if found:
            return False, found[0], found[0].recorded_patient_id
    try:
        recorded = await consents.record(session, principal, patient_id, data)
    except NotFound:
        # Missing and another tenant's patient alike.
        raise InvalidInput("no patient of this tenant has this id", field="Consent.patient.reference") from None
    except (InvalidInput, Conflict) as exc:
        raise _fhir_error(exc) from None
    consent = await session.get(Consent, recorded.id)
    assert consent is not None
    return True, consent, patient_id
