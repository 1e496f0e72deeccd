"""Appointments with patients."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.appointments import service
from core.appointments.schemas import AppointmentCreate, AppointmentOut, AppointmentUpdate, Status, StatusChange
from core.inputs import to_utc


def _aware(value: datetime | None, field: str) -> datetime | None:
    return to_utc(value, field, source="query") if value is not None else None


class AppointmentController(Controller):
    path = "/api/v1/appointments"
    tags = ["appointments"]

    @post("/", summary="Book (or propose) an appointment")
    async def create(self, session: Db, principal: Caller, data: JSONBody[AppointmentCreate]) -> AppointmentOut:
        return await service.create(session, principal, data)

    @get("/", summary="Appointments by patient, participant, status and start time, earliest first")
    async def search(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromQuery[uuid.UUID | None] = None,
        participant_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[Status | None] = None,
        start_from: Annotated[datetime | None, QueryParameter(name="from", description="start at or after")] = None,
        start_to: Annotated[datetime | None, QueryParameter(name="to", description="start before")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[AppointmentOut]:
        items = await service.search(
            session,
            principal,
            patient_id=patient_id,
            participant_id=participant_id,
            status=status,
            start_from=_aware(start_from, "from"),
            start_to=_aware(start_to, "to"),
            limit=limit,
            offset=offset,
        )
        return page_of(items, limit, offset)

    @get("/{appointment_id:uuid}", summary="One appointment")
    async def read(self, session: Db, principal: Caller, appointment_id: FromPath[uuid.UUID]) -> AppointmentOut:
        return await service.read(session, principal, appointment_id)

    @patch("/{appointment_id:uuid}", summary="Reschedule or change a proposed or booked appointment")
    async def update(
        self, session: Db, principal: Caller, appointment_id: FromPath[uuid.UUID], data: JSONBody[AppointmentUpdate]
    ) -> AppointmentOut:
        return await service.update(session, principal, appointment_id, data)

    @post(
        "/{appointment_id:uuid}/status",
        status_code=200,
        summary="Arrived, fulfilled, cancelled or no-show (409 if not allowed)",
    )
    async def change_status(
        self, session: Db, principal: Caller, appointment_id: FromPath[uuid.UUID], data: JSONBody[StatusChange]
    ) -> AppointmentOut:
        return await service.change_status(session, principal, appointment_id, data)
