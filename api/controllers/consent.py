"""Consents, the network view of a patient, break-the-glass and the network's consent default."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter

from api.deps import Caller, Db, cross_tenant_sessions
from core.conditions import service as conditions
from core.conditions.schemas import ConditionOut
from core.consent import break_glass, network, network_view, service
from core.consent.network_view import NetworkViewOut
from core.consent.schemas import (
    BreakGlassCreate,
    BreakGlassOut,
    ConsentCreate,
    ConsentOut,
    ConsentRevoke,
    LinkSystems,
    NetworkConsentDefault,
    PrimaryCareIn,
    PrimaryCareOut,
    Purpose,
)
from core.encounters import service as encounters
from core.encounters.schemas import DischargeCreate, EncounterOut


class ConsentController(Controller):
    path = "/api/v1"
    tags = ["consent"]

    @post("/patients/{patient_id:uuid}/consents", summary="Record a patient's consent (or refusal) to share")
    async def record(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[ConsentCreate]
    ) -> ConsentOut:
        return await service.record(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/consents", summary="The consents of a patient recorded by this tenant")
    async def list_for_patient(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]
    ) -> list[ConsentOut]:
        return await service.list_for_patient(session, principal, patient_id)

    @get("/consents/{consent_id:uuid}", summary="One consent recorded by this tenant")
    async def read(self, session: Db, principal: Caller, consent_id: FromPath[uuid.UUID]) -> ConsentOut:
        return await service.read(session, principal, consent_id)

    @post("/consents/{consent_id:uuid}/revoke", status_code=200, summary="Revoke a consent (effective at once)")
    async def revoke(
        self, session: Db, principal: Caller, consent_id: FromPath[uuid.UUID], data: JSONBody[ConsentRevoke]
    ) -> ConsentOut:
        return await service.revoke(session, principal, consent_id, data)

    @get(
        "/patients/{patient_id:uuid}/network-view",
        summary="The patient's own record plus what other tenants' records may be seen under consent",
    )
    async def network_view(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        patient_id: FromPath[uuid.UUID],
        purpose: Annotated[Purpose, QueryParameter(description="the purpose of use")] = "treatment",
    ) -> NetworkViewOut:
        return await network_view.view(session, cross_tenant_sessions(request), principal, patient_id, purpose)

    @post(
        "/patients/{patient_id:uuid}/break-glass",
        summary="Emergency access without consent: 4 hours, treatment categories, reviewed by privacy officers",
    )
    async def break_glass(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        patient_id: FromPath[uuid.UUID],
        data: JSONBody[BreakGlassCreate],
    ) -> BreakGlassOut:
        return await break_glass.open_break_glass(session, cross_tenant_sessions(request), principal, patient_id, data)

    @get("/network/consent-default", summary="What crosses tenants without a consent: opt_in (nothing) or opt_out")
    async def get_default(self, session: Db, principal: Caller) -> NetworkConsentDefault:
        return await network.get_network_default(session, principal)

    @put("/network/consent-default", summary="Choose the network's consent default (network administrators)")
    async def set_default(
        self, session: Db, principal: Caller, data: JSONBody[NetworkConsentDefault]
    ) -> NetworkConsentDefault:
        return await network.set_network_default(session, principal, data)

    @put(
        "/patients/{patient_id:uuid}/primary-care",
        summary="Mark this clinic as the patient's primary care (transition-of-care tasks come here)",
    )
    async def primary_care(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[PrimaryCareIn]
    ) -> PrimaryCareOut:
        return await network.set_primary_care(session, principal, patient_id, data.primary_care)

    @get("/network/link-systems", summary="The identifier systems that link records across tenants automatically")
    async def get_link_systems(self, session: Db, principal: Caller) -> LinkSystems:
        return await network.get_link_systems(session, principal)

    @put("/network/link-systems", summary="Choose the identifier systems that link records (network administrators)")
    async def set_link_systems(self, session: Db, principal: Caller, data: JSONBody[LinkSystems]) -> LinkSystems:
        return await network.set_link_systems(session, principal, data)

    @post("/patients/{patient_id:uuid}/discharges", summary="Record a hospital discharge (starts transition of care)")
    async def discharge(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[DischargeCreate]
    ) -> EncounterOut:
        return await encounters.record_discharge(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/encounters", summary="A patient's hospital stays, newest first")
    async def encounters(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> list[EncounterOut]:
        return await encounters.list_for_patient(session, principal, patient_id)

    @get("/patients/{patient_id:uuid}/conditions", summary="A patient's conditions (from EHR feeds), latest first")
    async def conditions(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> list[ConditionOut]:
        return await conditions.list_for_patient(session, principal, patient_id)


class PortalConsentController(Controller):
    path = "/api/v1/portal/consents"
    tags = ["portal"]

    @get("/", summary="Every consent of the signed-in patient, wherever it was recorded")
    async def list_mine(self, session: Db, principal: Caller) -> list[ConsentOut]:
        return await service.list_for_portal(session, principal)

    @post("/", summary="Give a consent in the portal (source: portal)")
    async def record(self, session: Db, principal: Caller, data: JSONBody[ConsentCreate]) -> ConsentOut:
        return await service.record(session, principal, principal.patient_id or uuid.UUID(int=0), data, portal=True)

    @post("/{consent_id:uuid}/revoke", status_code=200, summary="Revoke one of your consents (effective at once)")
    async def revoke(
        self, session: Db, principal: Caller, consent_id: FromPath[uuid.UUID], data: JSONBody[ConsentRevoke]
    ) -> ConsentOut:
        return await service.revoke(session, principal, consent_id, data)
