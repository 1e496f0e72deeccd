"""The tenant's dead-letter list (tenant administrators)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.jobs import service
from core.jobs.schemas import DeadLetterOut


class JobController(Controller):
    path = "/api/v1/jobs/dead-letters"
    tags = ["jobs"]

    @get("/", summary="Jobs that failed after every retry, newest first")
    async def list(
        self,
        session: Db,
        principal: Caller,
        pending_only: FromQuery[bool] = False,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DeadLetterOut]:
        items = await service.list_dead_letters(
            session, principal, pending_only=pending_only, limit=limit, offset=offset
        )
        return page_of(items, limit, offset)

    @get("/{dead_letter_id:uuid}", summary="One dead letter, with its error")
    async def read(self, session: Db, principal: Caller, dead_letter_id: FromPath[uuid.UUID]) -> DeadLetterOut:
        return await service.read_dead_letter(session, principal, dead_letter_id)

    @post(
        "/{dead_letter_id:uuid}/replay",
        status_code=202,
        summary="Run the job again (the worker's relay sends it; its effect still happens once)",
    )
    async def replay(self, session: Db, principal: Caller, dead_letter_id: FromPath[uuid.UUID]) -> DeadLetterOut:
        return await service.replay(session, principal, dead_letter_id)
