"""Lab results and education items of a patient."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.results import service
from core.results.schemas import EducationCreate, EducationOut, Interpretation, ResultCreate, ResultOut


class ResultController(Controller):
    path = "/api/v1"
    tags = ["results"]

    @post("/patients/{patient_id:uuid}/results", summary="Record a lab result in a patient's record")
    async def create(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[ResultCreate]
    ) -> ResultOut:
        return await service.create_result(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/results", summary="A patient's lab results, newest first")
    async def list_for_patient(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromPath[uuid.UUID],
        interpretation: Annotated[Interpretation | None, QueryParameter(description="only this interpretation")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[ResultOut]:
        items = await service.list_results(
            session, principal, patient_id, interpretation=interpretation, limit=limit, offset=offset
        )
        return page_of(items, limit, offset)

    @get("/results/{result_id:uuid}", summary="One lab result")
    async def read(self, session: Db, principal: Caller, result_id: FromPath[uuid.UUID]) -> ResultOut:
        return await service.read_result(session, principal, result_id)

    @post("/results/{result_id:uuid}/release", status_code=200, summary="Show the result in the patient portal")
    async def release(self, session: Db, principal: Caller, result_id: FromPath[uuid.UUID]) -> ResultOut:
        return await service.release_result(session, principal, result_id)

    @post("/results/{result_id:uuid}/acknowledge", status_code=200, summary="Record that you have seen the result")
    async def acknowledge(self, session: Db, principal: Caller, result_id: FromPath[uuid.UUID]) -> ResultOut:
        return await service.acknowledge_result(session, principal, result_id)

    @post("/patients/{patient_id:uuid}/education", summary="Assign reading material to a patient")
    async def assign_education(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[EducationCreate]
    ) -> EducationOut:
        return await service.assign_education(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/education", summary="A patient's education items, newest first")
    async def list_education(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromPath[uuid.UUID],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[EducationOut]:
        items = await service.list_education(session, principal, patient_id, limit=limit, offset=offset)
        return page_of(items, limit, offset)
