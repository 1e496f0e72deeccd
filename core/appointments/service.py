"""Appointments: booking, rescheduling, the status workflow, and no-shows (recorded for alerts and KPIs)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs, outbox, staff
from core.appointments.models import APPOINTMENT_TRANSITIONS, Appointment
from core.appointments.schemas import AppointmentCreate, AppointmentOut, AppointmentUpdate, Reminder, StatusChange
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.inputs import to_utc
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records

RESOURCE = "Appointment"
MAX_LENGTH = timedelta(hours=12)
OPEN = ("proposed", "booked")


def to_out(appointment: Appointment) -> AppointmentOut:
    return AppointmentOut(
        id=appointment.id,
        patient_id=appointment.patient_id,
        participant_id=appointment.participant_id,
        kind=appointment.kind,
        start_at=appointment.start_at,
        end_at=appointment.end_at,
        location=appointment.location,
        video_link=appointment.video_link,
        reason=appointment.reason,
        status=appointment.status,
        status_reason=appointment.status_reason,
        reminder=appointment.reminder,
        noshow_recorded_at=appointment.noshow_recorded_at,
        staff_note=appointment.staff_note,
        created_at=appointment.created_at,
        updated_at=appointment.updated_at,
        data_category=appointment.data_category,
    )


APPOINTMENTS = Records(
    model=Appointment,
    resource_type=RESOURCE,
    permission="appointments",
    not_found="appointment not found",
    shape=to_out,
)


def _not_past(start_at: datetime) -> None:
    if start_at < utcnow() - timedelta(days=1):
        raise InvalidInput("start_at is in the past", field="start_at")


def _check(appointment: Appointment) -> None:
    if appointment.end_at <= appointment.start_at:
        raise InvalidInput("end_at must be after start_at", field="end_at")
    if appointment.end_at - appointment.start_at > MAX_LENGTH:
        raise InvalidInput("an appointment lasts at most 12 hours", field="end_at")
    if appointment.kind == "video" and not appointment.video_link:
        raise InvalidInput("a video appointment needs a video_link", field="video_link")
    if appointment.kind == "in_person" and not appointment.location:
        raise InvalidInput("an in-person appointment needs a location", field="location")


def _event(session: AsyncSession, appointment: Appointment, topic: str, **extra: Any) -> None:
    payload = {"appointment_id": str(appointment.id), "patient_id": str(appointment.patient_id), **extra}
    outbox.emit(session, topic, payload, aggregate_id=appointment.patient_id)


async def create(session: AsyncSession, principal: Principal, data: AppointmentCreate) -> AppointmentOut:
    principal.require("appointments", "write")
    patient = await require_patient(session, principal, data.patient_id, "appointment.create", active=True)
    await staff.require_staff(session, data.participant_id, "participant_id")
    start_at, end_at = to_utc(data.start_at, "start_at"), to_utc(data.end_at, "end_at")
    _not_past(start_at)
    appointment = Appointment(
        id=uuid.uuid4(),
        patient_id=patient.id,
        participant_id=data.participant_id,
        kind=data.kind,
        start_at=start_at,
        end_at=end_at,
        location=data.location,
        video_link=data.video_link,
        reason=data.reason,
        status=data.status,
        reminder=msgspec.to_builtins(data.reminder or Reminder()),
        staff_note=data.staff_note,
        data_category=data.data_category,
        created_by=principal.user_id,
    )
    _check(appointment)
    session.add(appointment)
    APPOINTMENTS.audit(session, principal, appointment, "appointment.create")
    _event(session, appointment, "appointment.created", start_at=appointment.start_at.isoformat())
    await session.flush()
    return to_out(appointment)


async def read(session: AsyncSession, principal: Principal, appointment_id: uuid.UUID) -> AppointmentOut:
    appointment = await APPOINTMENTS.get(session, principal, appointment_id, "appointment.read", need="read")
    APPOINTMENTS.audit(session, principal, appointment, "appointment.read")
    return to_out(appointment)


async def update(
    session: AsyncSession, principal: Principal, appointment_id: uuid.UUID, data: AppointmentUpdate
) -> AppointmentOut:
    """Reschedule or change the details of a proposed or booked appointment."""
    appointment = await APPOINTMENTS.get(session, principal, appointment_id, "appointment.update", need="write")
    if appointment.status not in OPEN:
        raise Conflict(f"the appointment is {appointment.status}: it can no longer change", field="status")
    given = inputs.given(data)
    for field in ("start_at", "end_at"):
        if field in given:
            given[field] = to_utc(given[field], field)
    if "start_at" in given and given["start_at"] != appointment.start_at:
        _not_past(given["start_at"])
    if "participant_id" in given:
        await staff.require_staff(session, given["participant_id"], "participant_id")
    changed = []
    for field, value in given.items():
        stored = msgspec.to_builtins(value) if field == "reminder" else value
        if getattr(appointment, field) != stored:
            setattr(appointment, field, stored)
            changed.append(field)
    _check(appointment)
    if changed:
        appointment.updated_at = utcnow()
        topic = "appointment.rescheduled" if {"start_at", "end_at"} & set(changed) else "appointment.updated"
        _event(session, appointment, topic, fields=changed)
    APPOINTMENTS.audit(session, principal, appointment, "appointment.update", fields=changed)
    await session.flush()
    return to_out(appointment)


async def change_status(
    session: AsyncSession, principal: Principal, appointment_id: uuid.UUID, data: StatusChange
) -> AppointmentOut:
    appointment = await APPOINTMENTS.get(session, principal, appointment_id, "appointment.status", need="write")
    allowed = APPOINTMENT_TRANSITIONS[appointment.status]
    if data.status not in allowed:
        options = ", ".join(sorted(allowed)) or "none: the appointment is closed"
        raise Conflict(
            f"a {appointment.status} appointment cannot become {data.status} (allowed: {options})", field="status"
        )
    now = utcnow()
    if data.status in ("arrived", "noshow") and appointment.start_at > now + timedelta(hours=1):
        raise Conflict(f"the appointment has not started yet: it cannot be marked {data.status}", field="status")
    if data.status == "cancelled" and not data.reason:
        raise InvalidInput("say why the appointment is cancelled", field="reason")
    before = appointment.status
    appointment.status = data.status
    appointment.status_reason = data.reason
    appointment.updated_at = now
    if data.status == "noshow":
        appointment.noshow_recorded_at = now
    APPOINTMENTS.audit(session, principal, appointment, "appointment.status", **{"from": before, "to": data.status})
    _event(session, appointment, f"appointment.{data.status}", from_status=before)
    await session.flush()
    return to_out(appointment)


async def search(
    session: AsyncSession,
    principal: Principal,
    *,
    patient_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    status: str | None = None,
    start_from: datetime | None = None,
    start_to: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[AppointmentOut]:
    principal.require("appointments", "read")
    query = select(Appointment)
    if patient_id is not None:
        query = query.where(Appointment.patient_id == patient_id)
    if participant_id is not None:
        query = query.where(Appointment.participant_id == participant_id)
    if status is not None:
        query = query.where(Appointment.status == status)
    if start_from is not None:
        query = query.where(Appointment.start_at >= start_from)
    if start_to is not None:
        query = query.where(Appointment.start_at < start_to)
    query = query.order_by(Appointment.start_at, Appointment.id).limit(limit).offset(offset)
    rows = list((await session.scalars(query)).all())
    for appointment in rows:
        APPOINTMENTS.audit(session, principal, appointment, "appointment.search")
    return [to_out(a) for a in rows]
