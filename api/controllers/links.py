"""Linking a patient record to the network-level person: its link, match suggestions, confirm and unlink."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody

from api.deps import Caller, Db
from core.consent import linking
from core.consent.link_schemas import LinkConfirm, LinkOut, LinkSuggestions


class LinkController(Controller):
    path = "/api/v1/patients/{patient_id:uuid}"
    tags = ["record linking"]

    @get("/link", summary="This record's person and how many other records it has")
    async def read(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> LinkOut:
        return await linking.read_link(session, principal, patient_id)

    @get(
        "/link-suggestions",
        summary="Persons in other tenants who may be this patient (no other tenant's values are shown)",
    )
    async def suggestions(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> LinkSuggestions:
        return await linking.suggest(session, principal, patient_id)

    @post("/link", status_code=200, summary="Confirm a suggested match: join this record to that person")
    async def confirm(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[LinkConfirm]
    ) -> LinkOut:
        return await linking.confirm(session, principal, patient_id, data.person_id)

    @delete("/link", status_code=200, summary="Undo this record's link (it is never joined back automatically)")
    async def unlink(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> LinkOut:
        return await linking.unlink(session, principal, patient_id)
