"""The caller's alert inbox: open -> acknowledged -> resolved (or straight to resolved)."""

from __future__ import annotations

import uuid

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.alerts.models import Alert
from core.alerts.schemas import AlertOut
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.principal import Principal

RESOURCE = "Alert"


def to_out(alert: Alert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        kind=alert.kind,
        severity=alert.severity,
        title=alert.title,
        body=alert.body,
        state=alert.state,
        patient_id=alert.patient_id,
        task_id=alert.task_id,
        subject_type=alert.subject_type,
        subject_id=alert.subject_id,
        created_at=alert.created_at,
        acknowledged_at=alert.acknowledged_at,
        resolved_at=alert.resolved_at,
    )


async def inbox(
    session: AsyncSession, principal: Principal, *, state: str | None = None, limit: int = 50, offset: int = 0
) -> list[AlertOut]:
    """The caller's alerts, critical first, newest first; without ``state``, those not resolved."""
    principal.require("alerts", "read")
    query = select(Alert).where(Alert.user_id == principal.user_id)
    query = query.where(Alert.state == state) if state else query.where(Alert.state != "resolved")
    rank = case({"critical": 0, "warning": 1}, value=Alert.severity, else_=2)
    rows = await session.scalars(query.order_by(rank, Alert.created_at.desc(), Alert.id).limit(limit).offset(offset))
    return [to_out(a) for a in rows.all()]


async def _mine(session: AsyncSession, principal: Principal, alert_id: uuid.UUID) -> Alert:
    alert = await session.get(Alert, alert_id, with_for_update=True, populate_existing=True)
    if alert is None or alert.user_id != principal.user_id:
        raise NotFound("alert not found")
    return alert


async def acknowledge(session: AsyncSession, principal: Principal, alert_id: uuid.UUID) -> AlertOut:
    principal.require("alerts", "write")
    alert = await _mine(session, principal, alert_id)
    if alert.state == "resolved":
        raise Conflict("the alert is resolved", field="alert_id", source="path")
    if alert.state == "open":
        alert.state = "acknowledged"
        alert.acknowledged_at = utcnow()
        audit.record(
            session,
            principal.actor,
            action="alert.acknowledge",
            resource_type=RESOURCE,
            resource_id=alert.id,
            patient_id=alert.patient_id,
        )
    await session.flush()
    return to_out(alert)


async def resolve(session: AsyncSession, principal: Principal, alert_id: uuid.UUID) -> AlertOut:
    principal.require("alerts", "write")
    alert = await _mine(session, principal, alert_id)
    if alert.state != "resolved":
        now = utcnow()
        alert.acknowledged_at = alert.acknowledged_at or now
        alert.state = "resolved"
        alert.resolved_at = now
        audit.record(
            session,
            principal.actor,
            action="alert.resolve",
            resource_type=RESOURCE,
            resource_id=alert.id,
            patient_id=alert.patient_id,
        )
    await session.flush()
    return to_out(alert)
