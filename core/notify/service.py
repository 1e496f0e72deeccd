"""Notification preferences (a staff member's own, a patient's through staff or the portal) and what was sent."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.errors import Forbidden, NotFound
from core.notify.models import Notification, NotificationPreference
from core.notify.rules_config import check_timezone
from core.notify.schemas import NotificationOut, PreferencesBody, PreferencesOut, QuietHours
from core.patients.service import PATIENTS
from core.portal.service import own_patient
from core.principal import Principal


def _out(pref: NotificationPreference | None) -> PreferencesOut:
    if pref is None:
        return PreferencesOut()
    return PreferencesOut(
        channels=list(pref.channels),
        min_severity=pref.min_severity,  # type: ignore[arg-type]
        email=pref.email,
        phone=pref.phone,
        quiet_hours=QuietHours(pref.quiet_start, pref.quiet_end) if pref.quiet_start and pref.quiet_end else None,
        timezone=pref.timezone,
        updated_at=pref.updated_at,
    )


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        channel=n.channel,
        kind=n.kind,
        subject=n.subject,
        text=n.text,
        status=n.status,
        address=n.address,
        created_at=n.created_at,
        not_before=n.not_before,
        sent_at=n.sent_at,
        read_at=n.read_at,
        last_error=n.last_error,
    )


async def _save(
    session: AsyncSession,
    principal: Principal,
    body: PreferencesBody,
    *,
    user_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
) -> PreferencesOut:
    if body.timezone is not None:
        check_timezone(body.timezone, "timezone")
    where = (
        NotificationPreference.user_id == user_id
        if user_id is not None
        else NotificationPreference.patient_id == patient_id
    )
    pref = await session.scalar(select(NotificationPreference).where(where).with_for_update())
    if pref is None:
        pref = NotificationPreference(user_id=user_id, patient_id=patient_id)
        session.add(pref)
    pref.channels = sorted(set(body.channels))
    pref.min_severity = body.min_severity
    pref.email = body.email
    pref.phone = body.phone
    pref.quiet_start = body.quiet_hours.start if body.quiet_hours else None
    pref.quiet_end = body.quiet_hours.end if body.quiet_hours else None
    pref.timezone = body.timezone
    pref.updated_at = utcnow()
    audit.record(
        session,
        principal.actor,
        action="notification_preferences.update",
        resource_type="NotificationPreference",
        resource_id=pref.id,
        patient_id=patient_id,
        detail={"channels": pref.channels, "quiet_hours": bool(body.quiet_hours)},
    )
    await session.flush()
    return _out(pref)


def _staff(principal: Principal) -> uuid.UUID:
    principal.require("alerts", "read")
    if principal.is_patient:
        raise Forbidden("patients set their preferences in the portal", action="alerts.read", resource_type="alerts")
    return principal.user_id


async def my_preferences(session: AsyncSession, principal: Principal) -> PreferencesOut:
    user_id = _staff(principal)
    return _out(await session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user_id)))


async def set_my_preferences(session: AsyncSession, principal: Principal, body: PreferencesBody) -> PreferencesOut:
    user_id = _staff(principal)
    principal.require("alerts", "write")
    return await _save(session, principal, body, user_id=user_id)


async def patient_preferences(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> PreferencesOut:
    await PATIENTS.get(session, principal, patient_id, "notification_preferences.read", need="read")
    pref = await session.scalar(select(NotificationPreference).where(NotificationPreference.patient_id == patient_id))
    return _out(pref)


async def set_patient_preferences(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, body: PreferencesBody
) -> PreferencesOut:
    """Staff record the patient's choice (e.g. told on the phone)."""
    await PATIENTS.get(session, principal, patient_id, "notification_preferences.update", need="write")
    return await _save(session, principal, body, patient_id=patient_id)


async def patient_notifications(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, *, limit: int, offset: int
) -> list[NotificationOut]:
    """What carehub sent (or tried to send) the patient, newest first: did the reminder go out?"""
    await PATIENTS.get(session, principal, patient_id, "notifications.read", need="read")
    rows = await session.scalars(
        select(Notification)
        .where(Notification.patient_id == patient_id)
        .order_by(Notification.created_at.desc(), Notification.id)
        .limit(limit)
        .offset(offset)
    )
    items = [notification_out(n) for n in rows.all()]
    audit.record(
        session,
        principal.actor,
        action="notifications.read",
        resource_type="Notification",
        patient_id=patient_id,
        detail={"ids": [str(n.id) for n in items]},
    )
    return items


async def portal_preferences(session: AsyncSession, principal: Principal) -> PreferencesOut:
    patient_id = own_patient(principal, "read")
    return _out(
        await session.scalar(select(NotificationPreference).where(NotificationPreference.patient_id == patient_id))
    )


async def set_portal_preferences(session: AsyncSession, principal: Principal, body: PreferencesBody) -> PreferencesOut:
    patient_id = own_patient(principal, "write")
    return await _save(session, principal, body, patient_id=patient_id)


async def portal_notifications(
    session: AsyncSession, principal: Principal, *, limit: int, offset: int
) -> list[NotificationOut]:
    """The patient's in-app messages (reminders and the like), newest first."""
    patient_id = own_patient(principal, "read")
    rows = await session.scalars(
        select(Notification)
        .where(Notification.patient_id == patient_id, Notification.channel == "in_app")
        .order_by(Notification.created_at.desc(), Notification.id)
        .limit(limit)
        .offset(offset)
    )
    return [notification_out(n) for n in rows.all()]


async def portal_mark_read(session: AsyncSession, principal: Principal, notification_id: uuid.UUID) -> NotificationOut:
    patient_id = own_patient(principal, "read")
    n = await session.get(Notification, notification_id, with_for_update=True, populate_existing=True)
    if n is None or n.patient_id != patient_id or n.channel != "in_app":
        raise NotFound("notification not found")
    if n.read_at is None:
        n.read_at = utcnow()
    await session.flush()
    return notification_out(n)
