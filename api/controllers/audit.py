"""The tenant's audit log (tenant administrators, read only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core import audit


class AuditEventOut(msgspec.Struct):
    id: uuid.UUID
    at: datetime
    actor_user_id: uuid.UUID | None
    actor_roles: list[str]
    patient_id: uuid.UUID | None
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    reason: str | None
    detail: dict[str, Any] | None


class AuditController(Controller):
    path = "/api/v1/audit-events"
    tags = ["audit"]

    @get("/", summary="The tenant's audit events, newest first")
    async def list(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromQuery[uuid.UUID | None] = None,
        actor_user_id: FromQuery[uuid.UUID | None] = None,
        action: Annotated[str | None, QueryParameter(max_length=64)] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[AuditEventOut]:
        events = await audit.list_events(
            session,
            principal,
            patient_id=patient_id,
            actor_user_id=actor_user_id,
            action=action,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        items = [
            AuditEventOut(
                id=e.id,
                at=e.at,
                actor_user_id=e.actor_user_id,
                actor_roles=list(e.actor_roles),
                patient_id=e.patient_id,
                action=e.action,
                resource_type=e.resource_type,
                resource_id=e.resource_id,
                outcome=e.outcome,
                reason=e.reason,
                detail=e.detail,
            )
            for e in events
        ]
        return page_of(items, limit, offset)
