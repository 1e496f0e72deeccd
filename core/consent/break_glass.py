"""Break-the-glass: a clinician's time-boxed emergency access to the other tenants' records of a patient."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, staff
from core.alerts.models import Alert
from core.consent.access import BREAK_GLASS_OPEN
from core.consent.categories import BREAK_GLASS_CATEGORIES, BREAK_GLASS_DURATION
from core.consent.linking import link_for
from core.consent.models import BreakGlass, PatientLink
from core.consent.schemas import BreakGlassCreate, BreakGlassOut
from core.db import utcnow
from core.errors import Conflict
from core.patients.service import require_patient
from core.principal import Principal
from tenants.context import tenant_context
from tenants.models import Tenant

Sessions = Callable[[], AsyncSession]


async def open_break_glass(
    session: AsyncSession, sessions: Sessions, principal: Principal, patient_id: uuid.UUID, data: BreakGlassCreate
) -> BreakGlassOut:
    """Open emergency access to the other tenants' records of this patient's person, without consent.

    Time-boxed (4 hours), limited to treatment categories, for this clinician only. Flagged in the audit log of
    the requesting tenant and of every tenant holding a record of the person, whose privacy officers (or, without
    one, administrators) get an alert to review it. While one is open, another is refused.
    """
    # The record first: another tenant's patient answers 404 whatever the caller's role (as absent ones do).
    patient = await require_patient(session, principal, patient_id, "break_glass.open")
    principal.require("break_glass", "write")
    assert principal.tenant_id is not None
    link = await link_for(session, principal, patient)
    now = utcnow()
    open_grant = await session.scalar(
        select(BreakGlass).where(
            BreakGlass.person_id == link.person_id,
            BreakGlass.tenant_id == principal.tenant_id,
            BreakGlass.user_id == principal.user_id,
            BreakGlass.expires_at > now,
        )
    )
    if open_grant is not None:
        raise Conflict(f"your emergency access to this patient is open until {open_grant.expires_at.isoformat()}")
    grant = BreakGlass(
        id=uuid.uuid4(),
        person_id=link.person_id,
        tenant_id=principal.tenant_id,
        patient_id=patient.id,
        user_id=principal.user_id,
        reason=data.reason,
        opened_at=now,
        expires_at=now + BREAK_GLASS_DURATION,
    )
    detail = {
        "flag": "break_the_glass",
        "break_glass_id": str(grant.id),
        "expires_at": grant.expires_at.isoformat(),
        "categories": sorted(BREAK_GLASS_CATEGORIES),
    }
    others = list(
        await session.execute(
            select(PatientLink.tenant_id, PatientLink.patient_id).where(
                PatientLink.person_id == link.person_id, PatientLink.tenant_id != principal.tenant_id
            )
        )
    )
    requester = await session.get(Tenant, principal.tenant_id)
    assert requester is not None
    # Each source tenant is told first, in its own context and transaction (its audit log, its privacy
    # officers' inboxes); this request's own writes follow (SQLite allows one writer at a time).
    for tenant_id, their_patient in others:
        with tenant_context(tenant_id):
            async with sessions() as other, other.begin():
                audit.record(
                    other,
                    principal.actor,
                    action=BREAK_GLASS_OPEN,
                    resource_type="BreakGlass",
                    resource_id=grant.id,
                    patient_id=their_patient,
                    reason=data.reason,
                    detail={
                        **detail,
                        "direction": "inbound",
                        "requesting_tenant_id": str(principal.tenant_id),
                        "requesting_tenant_name": requester.name,
                        "requesting_user": principal.full_name,
                    },
                )
                for user_id in await staff.holding(other, "privacy_officer", "tenant_admin"):
                    other.add(
                        Alert(
                            user_id=user_id,
                            patient_id=their_patient,
                            kind="break_glass",
                            severity="warning",
                            title=f"Emergency access by {requester.name} to review",
                            body=(
                                f"{principal.full_name} ({requester.name}) opened emergency access to this patient's "
                                f"records until {grant.expires_at.isoformat()}. Reason given: {data.reason}"
                            ),
                            source_event_id=grant.id,
                            subject_type="BreakGlass",
                            subject_id=grant.id,
                        )
                    )
    session.add(grant)
    audit.record(
        session,
        principal.actor,
        action=BREAK_GLASS_OPEN,
        resource_type="BreakGlass",
        resource_id=grant.id,
        patient_id=patient.id,
        reason=data.reason,
        detail={**detail, "direction": "outbound"},
    )
    await session.flush()
    return BreakGlassOut(
        id=grant.id,
        patient_id=patient.id,
        reason=grant.reason,
        opened_at=grant.opened_at,
        expires_at=grant.expires_at,
        categories=sorted(BREAK_GLASS_CATEGORIES),
    )
