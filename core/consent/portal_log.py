"""The patient's view of the access report: who in the network looked at (or asked to see) their records, in plain
words (categories and purposes as the patient reads them), gathered from every tenant holding one of their records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import AuditEvent
from core.consent import decision, linking
from core.consent.access import ACCESS_ACTIONS, BREAK_GLASS_OPEN
from core.consent.categories import BREAK_GLASS_PURPOSE
from core.consent.models import PatientLink
from core.consent.network import tenant_names
from core.consent.report import detail_id, detail_text, user_names
from core.portal.service import own_patient
from core.principal import Principal
from tenants.context import tenant_context

Sessions = Callable[[], AsyncSession]
# What the patient reads: categories and purposes in plain words.
CATEGORY_LABELS = {
    "demographics": "personal details (name, birth date, contact details)",
    "care_plan": "care plan",
    "tasks_appointments": "tasks and appointments",
    "messages": "messages",
    "clinical_results": "lab results",
    "behavioral_health": "mental health records",
    "substance_use_disorder": "substance use treatment records",
    "social_needs": "social needs (housing, food, transport)",
}


PURPOSE_LABELS = {
    "treatment": "to treat you",
    "care_coordination": "to coordinate your care",
    "payment": "for payment",
    "research": "for research",
}


class PortalAccessOut(msgspec.Struct):
    """One access to one of the patient's records by another organisation of the network, in plain words."""

    at: datetime
    # The organisation whose staff asked, and who.
    organisation: str | None
    user_name: str | None
    # The organisation whose record of the patient was looked at.
    record_organisation: str | None
    category: str | None
    category_label: str
    purpose: str | None
    purpose_label: str | None
    allowed: bool
    # "allowed", "refused" or "emergency access opened"
    status: str
    emergency: bool
    summary: str


@dataclass(frozen=True)
class _Inbound:
    id: uuid.UUID
    at: datetime
    action: str
    outcome: str
    user_id: uuid.UUID | None
    reason: str | None
    detail: dict[str, Any]
    record_tenant: uuid.UUID


async def _inbound_events(
    sessions: Sessions, tenant_id: uuid.UUID, patient_id: uuid.UUID, fetch: int
) -> list[_Inbound]:
    """The newest ``fetch`` inbound access events on one record, read in its own tenant's context."""
    with tenant_context(tenant_id):
        async with sessions() as other, other.begin():
            events = await other.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.patient_id == patient_id,
                    AuditEvent.action.in_(ACCESS_ACTIONS),
                    AuditEvent.detail["direction"].as_string() == "inbound",
                )
                .order_by(AuditEvent.at.desc(), AuditEvent.id)
                .limit(fetch)
            )
            return [
                _Inbound(e.id, e.at, e.action, e.outcome, e.actor_user_id, e.reason, dict(e.detail or {}), tenant_id)
                for e in events
            ]


def _portal_row(event: _Inbound, users: dict[uuid.UUID, str], tenants: dict[uuid.UUID, str]) -> PortalAccessOut:
    detail = event.detail
    requester_id = detail_id(detail, "requesting_tenant_id")
    organisation = detail_text(detail, "requesting_tenant_name") or (
        tenants.get(requester_id) if requester_id else None
    )
    user_name = (users.get(event.user_id) if event.user_id else None) or detail_text(detail, "requesting_user")
    record_organisation = tenants.get(event.record_tenant)
    who = f"{user_name or 'A staff member'} ({organisation or 'another organisation'})"
    where = f"your record at {record_organisation}" if record_organisation else "your record"
    if event.action == BREAK_GLASS_OPEN:
        categories = [CATEGORY_LABELS.get(str(c), str(c)) for c in detail.get("categories") or []]
        label = "emergency access to " + (", ".join(categories) if categories else "your records")
        return PortalAccessOut(
            at=event.at,
            organisation=organisation,
            user_name=user_name,
            record_organisation=record_organisation,
            category=None,
            category_label=label,
            purpose=BREAK_GLASS_PURPOSE,
            purpose_label=PURPOSE_LABELS[BREAK_GLASS_PURPOSE],
            allowed=True,
            status="emergency access opened",
            emergency=True,
            summary=f"{who} opened emergency access to {where} without your consent, giving the reason: "
            f"{event.reason or 'none given'}. The organisation's privacy officer reviews it.",
        )
    category = detail_text(detail, "category")
    purpose = detail_text(detail, "purpose")
    label = CATEGORY_LABELS.get(category or "", category or "your record")
    purpose_label = PURPOSE_LABELS.get(purpose or "", purpose) if purpose else None
    allowed = event.outcome == "success"
    emergency = detail.get("basis") == decision.BREAK_THE_GLASS
    if allowed:
        summary = f"{who} looked at the {label} in {where}" + (f" {purpose_label}" if purpose_label else "")
        summary += " (emergency access)." if emergency else "."
    else:
        summary = f"{who} asked to see the {label} in {where}; it was refused (no consent of yours allows it)."
    return PortalAccessOut(
        at=event.at,
        organisation=organisation,
        user_name=user_name,
        record_organisation=record_organisation,
        category=category,
        category_label=label,
        purpose=purpose,
        purpose_label=purpose_label,
        allowed=allowed,
        status="allowed" if allowed else "refused",
        emergency=emergency,
        summary=summary,
    )


async def portal_access_log(
    session: AsyncSession, sessions: Sessions, principal: Principal, *, limit: int, offset: int
) -> list[PortalAccessOut]:
    """Who in the network accessed (or asked to access) any of the signed-in patient's records, newest first.

    Covers every record linked to the patient's person, in every tenant; allowed and refused requests and
    emergency (break-the-glass) openings. Each tenant's events are read in that tenant's context.
    """
    patient_id = own_patient(principal, "read")
    assert principal.tenant_id is not None
    link = await linking.link_of(session, principal.tenant_id, patient_id)
    records: list[tuple[uuid.UUID, uuid.UUID]] = [(principal.tenant_id, patient_id)]
    if link is not None:
        records = [
            (row[0], row[1])
            for row in await session.execute(
                select(PatientLink.tenant_id, PatientLink.patient_id).where(PatientLink.person_id == link.person_id)
            )
        ]
    # Each record's newest offset + limit events suffice to page through their merge.
    fetch = offset + limit
    events: list[_Inbound] = []
    for tenant_id, their_patient in records:
        events.extend(await _inbound_events(sessions, tenant_id, their_patient, fetch))
    events.sort(key=lambda e: (e.at, e.id.hex), reverse=True)
    page = events[offset : offset + limit]
    users = await user_names(session, (e.user_id for e in page))
    tenants = await tenant_names(
        session, [e.record_tenant for e in page] + [detail_id(e.detail, "requesting_tenant_id") for e in page]
    )
    audit.record(
        session,
        principal.actor,
        action="portal.access_log.read",
        resource_type="AuditEvent",
        patient_id=patient_id,
        detail={"rows": len(page)},
    )
    return [_portal_row(e, users, tenants) for e in page]
