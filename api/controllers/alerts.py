"""The caller's alert inbox."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.params import FromPath, QueryParameter

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.alerts import service
from core.alerts.schemas import AlertOut


class AlertController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]

    @get("/", summary="My alerts: critical first, newest first (by default those not resolved)")
    async def inbox(
        self,
        session: Db,
        principal: Caller,
        alert_state: Annotated[
            Literal["open", "acknowledged", "resolved"] | None,
            QueryParameter(name="state", description="without it: the alerts not resolved"),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[AlertOut]:
        items = await service.inbox(session, principal, state=alert_state, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post("/{alert_id:uuid}/acknowledge", status_code=200, summary="I have seen it")
    async def acknowledge(self, session: Db, principal: Caller, alert_id: FromPath[uuid.UUID]) -> AlertOut:
        return await service.acknowledge(session, principal, alert_id)

    @post("/{alert_id:uuid}/resolve", status_code=200, summary="Done with it")
    async def resolve(self, session: Db, principal: Caller, alert_id: FromPath[uuid.UUID]) -> AlertOut:
        return await service.resolve(session, principal, alert_id)
