"""Queueing notifications in a rule's transaction, and sending them from a job.

In-app delivery is immediate: an alert in a staff member's inbox, a message in a patient's portal. Email and SMS
are :class:`~core.notify.models.Notification` rows queued with a ``notification.queued`` event; the
``send-notification`` handler sends each through its channel plugin, outside quiet hours unless urgent, and
records the outcome. A rule that runs twice queues once (unique dedupe key per channel).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import outbox
from core.db import utcnow
from core.notify import rules_config
from core.notify.messages import Content, lower
from core.notify.models import Notification, NotificationPreference
from core.notify.schemas import QuietHours
from core.patients.models import Patient
from core.plugins import PluginError, channels
from plugin_sdk import Channel, ChannelError, Detail, OutboundMessage
from tenants.context import current_tenant_id
from tenants.models import Tenant, User

if TYPE_CHECKING:
    from core.jobs.events import Event

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_config: dict[str, str] = {}
_channels: dict[str, Channel] | None = None


def configure(config: Mapping[str, str]) -> None:
    """Use these channel settings (``Settings.channel_config``) from now on in this process."""
    global _channels, _config
    _config = dict(config)
    _channels = None


def configured_channels() -> dict[str, Channel]:
    global _channels
    if _channels is None:
        _channels = channels(_config)
    return _channels


def _detail(channel: str) -> Detail:
    """The most a message on ``channel`` may say to anyone: clinical in-app, at most logistics elsewhere."""
    if channel == "in_app":
        return "clinical"
    try:
        found = configured_channels().get(channel)
    except PluginError:
        found = None
    return lower(found.max_detail, "logistics") if found is not None else "none"


async def facility_name(session: AsyncSession) -> str:
    name = await session.scalar(select(Tenant.name).where(Tenant.id == current_tenant_id()))
    return name or "your care team"


async def _existing(session: AsyncSession, dedupe_key: str) -> set[str]:
    rows = await session.scalars(select(Notification.channel).where(Notification.dedupe_key == dedupe_key))
    return set(rows.all())


def _queue(session: AsyncSession, notification: Notification) -> None:
    session.add(notification)
    outbox.emit(
        session,
        "notification.queued",
        {"notification_id": str(notification.id)},
        aggregate_id=notification.patient_id,
    )


async def to_patient(
    session: AsyncSession,
    patient: Patient,
    *,
    kind: str,
    content: Content,
    dedupe_key: str,
    channels_wanted: list[str],
    urgent: bool = False,
) -> list[Notification]:
    """The portal copy (always) and one queued message per external channel the patient accepts."""
    done = await _existing(session, dedupe_key)
    pref = await session.scalar(select(NotificationPreference).where(NotificationPreference.patient_id == patient.id))
    # The patient's own choice, once made, wins over what the appointment asked for (no channels: portal only).
    accepted = set(pref.channels) if pref is not None else set(channels_wanted)
    made: list[Notification] = []
    now = utcnow()
    if "in_app" not in done:
        text = content.at("clinical")
        portal = Notification(
            id=uuid.uuid4(),
            patient_id=patient.id,
            channel="in_app",
            kind=kind,
            subject=text.subject[:200],
            text=text.text,
            dedupe_key=dedupe_key,
            status="sent",
            sent_at=now,
            created_at=now,
        )
        session.add(portal)
        made.append(portal)
    for channel in ("email", "sms"):
        if channel not in channels_wanted or channel not in accepted or channel in done:
            continue
        if channel == "email":
            address = (pref.email if pref else None) or patient.email
        else:
            address = e164((pref.phone if pref else None) or patient.phone)
        text = content.at(_detail(channel))
        notification = Notification(
            id=uuid.uuid4(),
            patient_id=patient.id,
            channel=channel,
            kind=kind,
            urgent=urgent,
            address=address,
            subject=text.subject[:200],
            text=text.text,
            dedupe_key=dedupe_key,
            created_at=now,
        )
        if not address:
            notification.status = "suppressed"
            notification.last_error = (
                "no email address on file"
                if channel == "email"
                else "no phone number in international form (+country code ...) on file"
            )
            session.add(notification)
        else:
            _queue(session, notification)
        made.append(notification)
    return made


async def to_staff(
    session: AsyncSession, user_id: uuid.UUID, *, kind: str, severity: str, content: Content, dedupe_key: str
) -> list[Notification]:
    """Copies of an in-app alert on the staff member's chosen channels, when it is severe enough for them.

    Critical alerts are urgent: they go out in quiet hours too."""
    pref = await session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    if pref is None or not pref.channels or SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK.get(pref.min_severity, 2):
        return []
    done = await _existing(session, dedupe_key)
    user = await session.get(User, user_id)
    made = []
    for channel in pref.channels:
        if channel in done:
            continue
        address = (pref.email or (user.email if user else None)) if channel == "email" else pref.phone
        text = content.at(_detail(channel))
        notification = Notification(
            id=uuid.uuid4(),
            user_id=user_id,
            channel=channel,
            kind=kind,
            urgent=severity == "critical",
            address=address,
            subject=text.subject[:200],
            text=text.text,
            dedupe_key=dedupe_key,
            created_at=utcnow(),
        )
        if not address:
            notification.status = "suppressed"
            notification.last_error = "no phone number in the preferences"
            session.add(notification)
        else:
            _queue(session, notification)
        made.append(notification)
    return made


def e164(phone: str | None) -> str | None:
    """A phone number on file in E.164 form ("+1 555 0100" -> "+15550100"), or None when it is not one."""
    if not phone:
        return None
    compact = "".join(ch for ch in phone if ch not in " -.()")
    digits = compact[1:]
    if compact.startswith("+") and digits.isdigit() and 7 <= len(digits) <= 15 and digits[0] != "0":
        return compact
    return None


def quiet_until(now: datetime, hours: QuietHours | None, timezone: str) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not in them."""
    if hours is None or hours.start == hours.end:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start, end = time.fromisoformat(hours.start), time.fromisoformat(hours.end)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    # Wall-clock end in the zone (fold=0: the first of an ambiguous time), then to UTC.
    ending = datetime.combine(day, end, tzinfo=zone)
    return ending.astimezone(ZoneInfo("UTC"))


async def _quiet(session: AsyncSession, notification: Notification, now: datetime) -> datetime | None:
    settings = await rules_config.current(session)
    pref = await session.scalar(
        select(NotificationPreference).where(
            NotificationPreference.patient_id == notification.patient_id
            if notification.patient_id
            else NotificationPreference.user_id == notification.user_id
        )
    )
    hours: QuietHours | None = None
    if pref is not None and pref.quiet_start and pref.quiet_end:
        hours = QuietHours(pref.quiet_start, pref.quiet_end)
    elif notification.patient_id is not None:
        hours = settings.patient_quiet_hours
    timezone = (pref.timezone if pref is not None else None) or settings.timezone
    return quiet_until(now, hours, timezone)


async def send_notification(session: AsyncSession, event: Event) -> None:
    """Send one queued notification through its channel (retried on transient failures, not on permanent ones)."""
    notification = await session.get(
        Notification, uuid.UUID(event.payload["notification_id"]), with_for_update=True, populate_existing=True
    )
    if notification is None or notification.status != "queued":
        return
    now = utcnow()
    # A released notification's quiet hours have ended (by the releasing tick's clock): it goes now.
    if not notification.urgent and not event.payload.get("released"):
        until = await _quiet(session, notification, now)
        if until is not None:
            notification.status = "deferred"
            notification.not_before = until
            return
    try:
        channel = configured_channels().get(notification.channel)
    except PluginError as exc:
        channel, problem = None, str(exc)
    else:
        problem = f"the {notification.channel} channel is not configured"
    notification.attempts += 1
    if channel is None or not notification.address:
        notification.status = "failed"
        notification.last_error = problem[:500]
        return
    message = OutboundMessage(
        id=str(notification.id),
        channel=notification.channel,
        to=notification.address,
        subject=notification.subject,
        text=notification.text,
        sender_name=await facility_name(session),
    )
    try:
        reference = await asyncio.wait_for(channel.send(message), timeout=channel.timeout_seconds + 5)
    except ChannelError as exc:
        if not exc.permanent:
            raise  # retried with backoff; after the last retry, in the dead letters
        notification.status = "failed"
        notification.last_error = str(exc)[:500]
        return
    except TimeoutError:
        raise ChannelError(f"the {notification.channel} channel did not answer in time") from None
    notification.status = "sent"
    notification.sent_at = utcnow()
    notification.provider_ref = (reference or "")[:200] or None
    notification.last_error = None


async def release_deferred(session: AsyncSession, event: Event) -> None:
    """Queue again the notifications whose quiet hours have ended (every minute)."""
    at = datetime.fromisoformat(event.payload["at"])
    due = await session.scalars(
        select(Notification).where(Notification.status == "deferred", Notification.not_before <= at).limit(1000)
    )
    for notification in due.all():
        notification.status = "queued"
        notification.not_before = None
        outbox.emit(
            session,
            "notification.queued",
            {"notification_id": str(notification.id), "released": True},
            aggregate_id=notification.patient_id,
        )
