"""Access transparency: every cross-tenant access decision is an audit event, on both sides.

The *source* tenant (whose record was asked for) gets an ``inbound`` event on its own patient record, so its
privacy officer's access report and the patient's portal show who in the network looked; the *requesting* tenant
gets an ``outbound`` event on its own record of the person, so it can answer for its staff. Both name the
decision's basis and the consent (or break-the-glass grant, with its reason) that decided it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import Actor
from core.consent.decision import Decision

# The audit actions of cross-tenant access.
NETWORK_ACCESS = "network.access"
BREAK_GLASS_OPEN = "break_glass.open"
ACCESS_ACTIONS = (NETWORK_ACCESS, BREAK_GLASS_OPEN)


def decision_detail(decision: Decision) -> dict[str, Any]:
    return {
        "basis": decision.basis,
        "consent_id": str(decision.consent_id) if decision.consent_id else None,
        "break_glass_id": str(decision.break_glass_id) if decision.break_glass_id else None,
    }


def record_inbound(
    session: AsyncSession,
    actor: Actor,
    *,
    patient_id: uuid.UUID,
    requesting_tenant_id: uuid.UUID,
    requesting_tenant_name: str,
    category: str,
    purpose: str,
    decision: Decision,
    items: int,
) -> None:
    """In the source tenant's session: another tenant's user asked for ``category`` of our ``patient_id``."""
    audit.record(
        session,
        actor,
        action=NETWORK_ACCESS,
        resource_type=category,
        patient_id=patient_id,
        outcome="success" if decision.allowed else "denied",
        reason=decision.reason,
        detail={
            "direction": "inbound",
            "requesting_tenant_id": str(requesting_tenant_id),
            "requesting_tenant_name": requesting_tenant_name,
            "category": category,
            "purpose": purpose,
            "items": items if decision.allowed else 0,
            **decision_detail(decision),
        },
    )


def record_outbound(
    session: AsyncSession,
    actor: Actor,
    *,
    patient_id: uuid.UUID,
    source_tenant_id: uuid.UUID,
    category: str,
    purpose: str,
    decision: Decision,
    items: int,
) -> None:
    """In the requesting tenant's session: our user asked for ``category`` of another tenant's record.

    A denied access does not name the source tenant: that a tenant holds a record of the person is itself
    withheld from the requesting tenant (its administrators read this log).
    """
    audit.record(
        session,
        actor,
        action=NETWORK_ACCESS,
        resource_type=category,
        patient_id=patient_id,
        outcome="success" if decision.allowed else "denied",
        reason=decision.reason,
        detail={
            "direction": "outbound",
            "source_tenant_id": str(source_tenant_id) if decision.allowed else None,
            "category": category,
            "purpose": purpose,
            "items": items if decision.allowed else 0,
            **decision_detail(decision),
        },
    )
