"""The network view of a patient: the tenant's own record plus what other tenants' records it may see.

For each other tenant holding a linked record, the decision point is asked once per data category. The records
of a tenant are read inside *that tenant's* context (its own session, its row-level security), and only the
allowed categories leave it, each item labelled with its source tenant. Categories not allowed are absent: the
answer carries one total of withheld items (not per tenant, not per category: "2 substance use disorder items at
Clinic C" would itself disclose what the consent protects), so that the clinician knows to ask the patient.
A tenant none of whose categories is allowed does not appear at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.consent import access, decision
from core.consent.categories import CATEGORIES
from core.consent.linking import link_for
from core.consent.models import PatientLink
from core.consent.network import network_of
from core.consent.network_items import Item, items_of
from core.db import utcnow
from core.patients.models import Patient
from core.patients.service import require_patient
from core.principal import Principal
from tenants.context import tenant_context
from tenants.models import Tenant

Sessions = Callable[[], AsyncSession]
# The staff permission each of a tenant's own items needs (its own tenant's data: roles decide, not consent).
OWN_PERMISSION = {
    "patient": "patients",
    "care_plan": "careplans",
    "task": "tasks",
    "appointment": "appointments",
    "lab_result": "results",
    "encounter": "encounters",
    "condition": "conditions",
    "thread": "threads",
}


class CategoryOut(msgspec.Struct):
    category: str
    # own_tenant | consent | network_default | break_the_glass
    basis: str
    consent_id: uuid.UUID | None
    break_glass_id: uuid.UUID | None
    items: list[dict[str, Any]]


class SourceOut(msgspec.Struct):
    tenant_id: uuid.UUID
    tenant_name: str
    own: bool
    categories: list[CategoryOut]


class WithheldOut(msgspec.Struct):
    items: int
    message: str | None


class NetworkViewOut(msgspec.Struct):
    patient_id: uuid.UUID
    purpose: str
    generated_at: datetime
    sources: list[SourceOut]
    withheld: WithheldOut


def _also_allowed(item: Item, decisions: dict[str, decision.Decision]) -> bool:
    """Whether every further label an item carries is allowed too (its own category's decision is asked first)."""
    return all(decisions[label].allowed for label in item.also)


async def view(
    session: AsyncSession, sessions: Sessions, principal: Principal, patient_id: uuid.UUID, purpose: str
) -> NetworkViewOut:
    """The network view of the caller's tenant's patient ``patient_id`` for ``purpose``."""
    principal.require("network_view", "read")
    patient = await require_patient(session, principal, patient_id, "network.view")
    assert principal.tenant_id is not None
    link = await link_for(session, principal, patient)
    now = utcnow()
    network = await network_of(session, principal.tenant_id)
    point = await decision.load(session, [link.person_id], network.consent_default, now=now)
    requester = await session.get(Tenant, principal.tenant_id)
    assert requester is not None

    own_items = await items_of(session, patient)
    # Role checks once per item type, not per item (each is a Casbin enforce).
    may_read = {kind: principal.can(permission, "read") for kind, permission in OWN_PERMISSION.items()}
    sources = [
        SourceOut(
            tenant_id=principal.tenant_id,
            tenant_name=requester.name,
            own=True,
            categories=[
                CategoryOut(category, decision.OWN_TENANT, None, None, readable)
                for category in CATEGORIES
                if (readable := [i.data for i in own_items.get(category, []) if may_read[i.data["type"]]])
            ],
        )
    ]
    others = list(
        await session.execute(
            select(PatientLink.tenant_id, PatientLink.patient_id, Tenant.name)
            .join(Tenant, Tenant.id == PatientLink.tenant_id)
            .where(
                PatientLink.person_id == link.person_id,
                PatientLink.tenant_id != principal.tenant_id,
                Tenant.status == "active",
            )
            .order_by(Tenant.name, Tenant.id)
        )
    )
    withheld = 0
    for tenant_id, their_patient_id, tenant_name in others:
        decisions = {
            category: point.decide(
                decision.AccessRequest(
                    tenant_id=principal.tenant_id,
                    roles=principal.roles,
                    person_id=link.person_id,
                    category=category,
                    purpose=purpose,
                    at=now,
                    source_tenant_id=tenant_id,
                    user_id=principal.user_id,
                )
            )
            for category in CATEGORIES
        }
        shown: list[CategoryOut] = []
        with tenant_context(tenant_id):
            async with sessions() as other, other.begin():
                their_patient = await other.get(Patient, their_patient_id)
                items = await items_of(other, their_patient) if their_patient is not None else {}
                for category, decided in decisions.items():
                    held = items.get(category, [])
                    shareable = [i.data for i in held if decided.allowed and _also_allowed(i, decisions)]
                    withheld += len(held) - len(shareable)
                    access.record_inbound(
                        other,
                        principal.actor,
                        patient_id=their_patient_id,
                        requesting_tenant_id=principal.tenant_id,
                        requesting_tenant_name=requester.name,
                        category=category,
                        purpose=purpose,
                        decision=decided,
                        items=len(shareable),
                    )
                    if shareable:
                        shown.append(
                            CategoryOut(category, decided.basis, decided.consent_id, decided.break_glass_id, shareable)
                        )
        for item in shown:
            access.record_outbound(
                session,
                principal.actor,
                patient_id=patient.id,
                source_tenant_id=tenant_id,
                category=item.category,
                purpose=purpose,
                decision=decisions[item.category],
                items=len(item.items),
            )
        if shown:
            sources.append(SourceOut(tenant_id=tenant_id, tenant_name=tenant_name, own=False, categories=shown))
    audit.record(
        session,
        principal.actor,
        action="network.view",
        resource_type="Patient",
        resource_id=patient.id,
        patient_id=patient.id,
        detail={"purpose": purpose, "withheld_items": withheld, "sources_shown": len(sources) - 1},
    )
    message = None
    if withheld:
        message = (
            f"{withheld} item(s) held by other facilities of the network are not shared with you for"
            f" {purpose.replace('_', ' ')}: the patient's consent (or your role) does not allow it."
            " Ask the patient, or record their consent."
        )
    return NetworkViewOut(
        patient_id=patient.id,
        purpose=purpose,
        generated_at=now,
        sources=sources,
        withheld=WithheldOut(items=withheld, message=message),
    )
