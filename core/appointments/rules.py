"""The appointments' rules: a follow-up task for a missed appointment, and reminders to patients."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from core.appointments.models import Appointment
from core.db import utcnow
from core.notify import delivery, messages, rules_config
from core.patients.models import Patient
from core.tasks.automatic import add_task
from core.tasks.models import Task

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event


async def noshow_follow_up(session: AsyncSession, event: Event) -> None:
    """A missed appointment gets a follow-up task for the clinician who was to see the patient."""
    appointment = await session.get(Appointment, uuid.UUID(event.payload["appointment_id"]))
    if appointment is None or appointment.status != "noshow":
        return  # gone or changed since: nothing to follow up
    config = await rules_config.current(session)
    when = messages.local_time(appointment.start_at, config.timezone)
    task = Task(
        id=uuid.uuid4(),
        patient_id=appointment.patient_id,
        title="Follow up on a missed appointment",
        description=(
            f"The patient did not come to the {appointment.kind.replace('_', ' ')} appointment of {when}"
            f"{': ' + appointment.reason if appointment.reason else ''}. Reach them, find out why, and rebook."
        ),
        template_code="noshow-follow-up",
        owner_id=appointment.participant_id,
        due_at=utcnow() + timedelta(hours=config.noshow_follow_up_hours),
        priority="urgent",
        status="requested",
        escalation_level=0,
    )
    add_task(session, task, "no-show", {"rule": "appointment.noshow", "appointment_id": str(appointment.id)})


async def remind_appointments(session: AsyncSession, event: Event) -> None:
    """Remind patients of booked appointments at each appointment's offsets (e.g. 72 h and 24 h before).

    Only the nearest offset already reached is sent (an appointment booked 30 hours ahead gets the 24-hour
    reminder, not a late 72-hour one), once per offset and start time (rescheduling reminds again)."""
    at = datetime.fromisoformat(event.payload["at"])
    config = await rules_config.current(session)
    if not config.appointment_reminders:
        return
    horizon = at + timedelta(hours=24 * 30)
    upcoming = await session.scalars(
        select(Appointment).where(
            Appointment.status == "booked", Appointment.start_at > at, Appointment.start_at <= horizon
        )
    )
    facility: str | None = None
    for appointment in upcoming.all():
        reminder = appointment.reminder or {}
        wanted = [c for c in reminder.get("channels") or [] if c in ("in_app", "email", "sms")]
        offsets = sorted(int(h) for h in reminder.get("offsets_hours") or [])
        if not wanted or not offsets:
            continue
        reached = [h for h in offsets if at >= appointment.start_at - timedelta(hours=h)]
        if not reached:
            continue
        offset = reached[0]
        patient = await session.get(Patient, appointment.patient_id)
        if patient is None or not patient.active:
            continue
        facility = facility or await delivery.facility_name(session)
        content = messages.appointment_reminder(
            facility=facility,
            start_at=appointment.start_at,
            kind=appointment.kind,
            location=appointment.location,
            reason=appointment.reason,
            timezone=config.timezone,
        )
        await delivery.to_patient(
            session,
            patient,
            kind="appointment.reminder",
            content=content,
            dedupe_key=f"appointment-reminder/{appointment.id}/{appointment.start_at.isoformat()}/{offset}",
            channels_wanted=wanted,
        )
