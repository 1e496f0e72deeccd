"""The patient portal: a patient's own record, from their portal account (never a patient id from the caller)."""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody

from api.controllers.messaging import download_headers
from api.deps import Caller, Config, Db, Limit, Offset, Page, page_of
from core.messaging.blobs import blob_store
from core.messaging.schemas import MESSAGE_REQUEST_LIMIT, MessageCreate
from core.notify import service as notify
from core.notify.schemas import NotificationOut, PreferencesBody, PreferencesOut
from core.portal import clinical, schemas, service


class PortalController(Controller):
    path = "/api/v1/portal"
    tags = ["portal"]

    @get("/me", summary="Your details and your care team")
    async def me(self, session: Db, principal: Caller) -> schemas.Me:
        return await service.me(session, principal)

    @get("/notifications", summary="Messages from your care team's systems (reminders), newest first")
    async def notifications(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[NotificationOut]:
        items = await notify.portal_notifications(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post("/notifications/{notification_id:uuid}/read", status_code=200, summary="Mark a message read")
    async def notification_read(
        self, session: Db, principal: Caller, notification_id: FromPath[uuid.UUID]
    ) -> NotificationOut:
        return await notify.portal_mark_read(session, principal, notification_id)

    @get("/notification-preferences", summary="How you want to be reached (email, text messages, quiet hours)")
    async def preferences(self, session: Db, principal: Caller) -> PreferencesOut:
        return await notify.portal_preferences(session, principal)

    @put("/notification-preferences", status_code=200, summary="Choose how you want to be reached")
    async def set_preferences(self, session: Db, principal: Caller, data: JSONBody[PreferencesBody]) -> PreferencesOut:
        return await notify.set_portal_preferences(session, principal, data)

    @get("/care-plans", summary="Your care plans")
    async def care_plans(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.CarePlan]:
        items = await service.care_plans(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/care-plans/{plan_id:uuid}", summary="One of your care plans, with its goals and activities")
    async def care_plan(self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID]) -> schemas.CarePlan:
        return await service.care_plan(session, principal, plan_id)

    @get("/tasks", summary="What you are asked to do, open tasks first")
    async def tasks(self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0) -> Page[schemas.Task]:
        items = await service.tasks(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/appointments", summary="Your appointments, upcoming first")
    async def appointments(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Appointment]:
        items = await service.appointments(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/results", summary="Your lab results released to you, newest first")
    async def results(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Result]:
        items = await service.results(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/encounters", summary="Your hospital stays and visits, the latest first")
    async def encounters(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Encounter]:
        items = await clinical.encounters(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/conditions", summary="Your conditions (your problem list), the latest reported first")
    async def conditions(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Condition]:
        items = await clinical.conditions(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/education", summary="Reading material from your care team, unread first")
    async def education(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.EducationItem]:
        items = await service.education(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post("/education/{item_id:uuid}/read", status_code=200, summary="Mark an education item read")
    async def mark_read(self, session: Db, principal: Caller, item_id: FromPath[uuid.UUID]) -> schemas.EducationItem:
        return await service.mark_education_read(session, principal, item_id)

    @get("/threads", summary="Your conversations with your care team, most recent message first")
    async def threads(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Thread]:
        items = await service.threads(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post(
        "/threads",
        summary="Write to your care team (a new conversation)",
        request_max_body_size=MESSAGE_REQUEST_LIMIT,
    )
    async def start_thread(
        self, session: Db, principal: Caller, settings: Config, data: JSONBody[schemas.ThreadCreate]
    ) -> schemas.Thread:
        return await service.start_thread(session, principal, data, blob_store(settings))

    @get("/threads/{thread_id:uuid}", summary="One of your conversations, with your unread count")
    async def thread(self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID]) -> schemas.Thread:
        return await service.thread(session, principal, thread_id)

    @get("/threads/{thread_id:uuid}/messages", summary="The messages of a conversation, oldest first")
    async def messages(
        self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID], limit: Limit = 50, offset: Offset = 0
    ) -> Page[schemas.Message]:
        items = await service.messages(session, principal, thread_id, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post(
        "/threads/{thread_id:uuid}/messages",
        summary="Reply in a conversation (attachments in base64: 5 MiB each, 10 MiB together)",
        request_max_body_size=MESSAGE_REQUEST_LIMIT,
    )
    async def send_message(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[MessageCreate],
    ) -> schemas.Message:
        return await service.send_message(session, principal, thread_id, data, blob_store(settings))

    @post("/threads/{thread_id:uuid}/read", status_code=200, summary="Mark every message of a conversation read")
    async def mark_thread_read(self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID]) -> schemas.Thread:
        return await service.mark_thread_read(session, principal, thread_id)

    @get(
        "/threads/{thread_id:uuid}/attachments/{attachment_id:uuid}",
        summary="A file sent in a conversation (a download, checked against its sha256)",
        media_type="application/octet-stream",
    )
    async def attachment(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        thread_id: FromPath[uuid.UUID],
        attachment_id: FromPath[uuid.UUID],
    ) -> Response[bytes]:
        meta, data = await service.attachment(session, principal, thread_id, attachment_id, blob_store(settings))
        return Response(content=data, media_type=meta.content_type, headers=download_headers(meta))
