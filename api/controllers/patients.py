"""Patients of the caller's tenant."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.deps import Caller, Config, Db, Limit, Offset, Page, page_of
from core.patients import service
from core.patients.schemas import PatientCreate, PatientOut, PatientUpdate, PortalInvitationCreate
from tenants import onboarding
from tenants.schemas import InvitationOut


class PatientController(Controller):
    path = "/api/v1/patients"
    tags = ["patients"]

    @post("/", summary="Register a patient")
    async def create(self, session: Db, principal: Caller, data: JSONBody[PatientCreate]) -> PatientOut:
        return await service.create(session, principal, data)

    @get("/", summary="Search patients by name, birth date or identifier")
    async def search(
        self,
        session: Db,
        principal: Caller,
        name: Annotated[str | None, QueryParameter(max_length=100, description="start of given or family name")] = None,
        birth_date: FromQuery[date | None] = None,
        identifier: Annotated[str | None, QueryParameter(max_length=301, description="value or system|value")] = None,
        include_inactive: FromQuery[bool] = False,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[PatientOut]:
        items = await service.search(
            session,
            principal,
            name=name,
            birth_date=birth_date,
            identifier=identifier,
            include_inactive=include_inactive,
            limit=limit,
            offset=offset,
        )
        return page_of(items, limit, offset)

    @get("/{patient_id:uuid}", summary="One patient")
    async def read(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> PatientOut:
        return await service.read(session, principal, patient_id)

    @patch("/{patient_id:uuid}", summary="Change some of a patient's fields")
    async def update(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[PatientUpdate]
    ) -> PatientOut:
        return await service.update(session, principal, patient_id, data)

    @delete("/{patient_id:uuid}", status_code=200, summary="Deactivate a patient (the record is kept)")
    async def deactivate(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> PatientOut:
        return await service.deactivate(session, principal, patient_id)

    @post(
        "/{patient_id:uuid}/portal-invitation",
        summary="Invite the patient to the portal (one-time token; the account sees this patient only)",
    )
    async def invite_to_portal(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        patient_id: FromPath[uuid.UUID],
        data: JSONBody[PortalInvitationCreate],
    ) -> InvitationOut:
        await service.require_patient(
            session, principal, patient_id, "patient.portal_invitation", active=True, need="write"
        )
        return await onboarding.invite_patient(
            session, principal, patient_id, data.email, settings.invitation_ttl_hours
        )
