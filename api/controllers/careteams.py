"""Care teams of the caller's tenant's patients."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from api.deps import Caller, Db
from core.careteams import service
from core.careteams.schemas import CareTeamCreate, CareTeamOut, MemberIn, MemberUpdate


class CareTeamController(Controller):
    path = "/api/v1"
    tags = ["care teams"]

    @post("/patients/{patient_id:uuid}/care-team", summary="Create the patient's care team")
    async def create(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[CareTeamCreate]
    ) -> CareTeamOut:
        return await service.create(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/care-team", summary="The patient's care team")
    async def for_patient(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> CareTeamOut:
        return await service.for_patient(session, principal, patient_id)

    @get("/care-teams/{care_team_id:uuid}", summary="One care team")
    async def read(self, session: Db, principal: Caller, care_team_id: FromPath[uuid.UUID]) -> CareTeamOut:
        return await service.read(session, principal, care_team_id)

    @post("/care-teams/{care_team_id:uuid}/members", summary="Add a member (a staff user or an outside person)")
    async def add_member(
        self, session: Db, principal: Caller, care_team_id: FromPath[uuid.UUID], data: JSONBody[MemberIn]
    ) -> CareTeamOut:
        return await service.add_member(session, principal, care_team_id, data)

    @patch("/care-teams/{care_team_id:uuid}/members/{member_id:uuid}", summary="Change a member's role or lead")
    async def update_member(
        self,
        session: Db,
        principal: Caller,
        care_team_id: FromPath[uuid.UUID],
        member_id: FromPath[uuid.UUID],
        data: JSONBody[MemberUpdate],
    ) -> CareTeamOut:
        return await service.update_member(session, principal, care_team_id, member_id, data)

    @delete("/care-teams/{care_team_id:uuid}/members/{member_id:uuid}", status_code=200, summary="Remove a member")
    async def remove_member(
        self, session: Db, principal: Caller, care_team_id: FromPath[uuid.UUID], member_id: FromPath[uuid.UUID]
    ) -> CareTeamOut:
        return await service.remove_member(session, principal, care_team_id, member_id)
