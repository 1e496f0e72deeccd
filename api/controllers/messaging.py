"""Secure messaging threads: only participants see a thread, its messages and its attachments."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from api.deps import Caller, Config, Db, Limit, Offset, Page, page_of, provide_principal
from core.errors import Forbidden
from core.messaging import service
from core.messaging.blobs import blob_store
from core.messaging.schemas import (
    MESSAGE_REQUEST_LIMIT,
    AttachmentOut,
    MessageCreate,
    MessageEdit,
    MessageOut,
    ParticipantAdd,
    ThreadCreate,
    ThreadOut,
)
from core.principal import Principal

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ ()+-]")


async def provide_staff(request: Request[Any, Any, Any], session: Db) -> Principal:
    """The caller, who must be staff: portal accounts use ``/api/v1/portal/threads``."""
    principal = await provide_principal(request, session)
    if principal.is_patient:
        raise Forbidden("patients use the portal's conversations", action="threads.read", resource_type="threads")
    return principal


def download_headers(attachment: AttachmentOut) -> dict[str, str]:
    """Always a download (never rendered in the page), named safely, with the checksum the client can verify."""
    fallback = _UNSAFE_FILENAME.sub("_", attachment.name).strip(" .") or "attachment"
    encoded = quote(attachment.name, safe="")
    checksum = base64.b64encode(bytes.fromhex(attachment.sha256)).decode()
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "ETag": f'"{attachment.sha256}"',
        "Digest": f"sha-256={checksum}",
        "Repr-Digest": f"sha-256=:{checksum}:",
    }


class ThreadController(Controller):
    path = "/api/v1/threads"
    tags = ["messaging"]
    dependencies = {"principal": Provide(provide_staff)}

    @get("/", summary="Threads the caller takes part in, most recent message first")
    async def list_threads(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromQuery[uuid.UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[ThreadOut]:
        items = await service.list_threads(session, principal, patient_id=patient_id, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post(
        "/",
        summary="Start a thread about a patient with its first message",
        request_max_body_size=MESSAGE_REQUEST_LIMIT,
    )
    async def create(self, session: Db, principal: Caller, settings: Config, data: JSONBody[ThreadCreate]) -> ThreadOut:
        return await service.create_thread(session, principal, data, blob_store(settings))

    @get("/{thread_id:uuid}", summary="One thread, with the caller's unread count")
    async def read(self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID]) -> ThreadOut:
        return await service.get_thread(session, principal, thread_id)

    @post("/{thread_id:uuid}/participants", summary="Add a staff member to the thread")
    async def add_participant(
        self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID], data: JSONBody[ParticipantAdd]
    ) -> ThreadOut:
        return await service.add_participant(session, principal, thread_id, data.user_id)

    @get("/{thread_id:uuid}/messages", summary="The current version of every message, oldest first")
    async def list_messages(
        self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID], limit: Limit = 50, offset: Offset = 0
    ) -> Page[MessageOut]:
        items = await service.list_messages(session, principal, thread_id, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post(
        "/{thread_id:uuid}/messages",
        summary="Send a message (attachments in base64: 5 MiB each, 10 MiB together)",
        request_max_body_size=MESSAGE_REQUEST_LIMIT,
    )
    async def send(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[MessageCreate],
    ) -> MessageOut:
        return await service.send_message(session, principal, thread_id, data, blob_store(settings))

    @patch("/{thread_id:uuid}/messages/{message_id:uuid}", summary="Edit one's message (a new version)")
    async def edit(
        self,
        session: Db,
        principal: Caller,
        thread_id: FromPath[uuid.UUID],
        message_id: FromPath[uuid.UUID],
        data: JSONBody[MessageEdit],
    ) -> MessageOut:
        return await service.edit_message(session, principal, thread_id, message_id, data)

    @delete(
        "/{thread_id:uuid}/messages/{message_id:uuid}",
        status_code=200,
        summary="Delete one's message (a tombstone version; the history is kept)",
    )
    async def delete(
        self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID], message_id: FromPath[uuid.UUID]
    ) -> MessageOut:
        return await service.delete_message(session, principal, thread_id, message_id)

    @get("/{thread_id:uuid}/messages/{message_id:uuid}/history", summary="Every version of a message, oldest first")
    async def history(
        self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID], message_id: FromPath[uuid.UUID]
    ) -> list[MessageOut]:
        return await service.message_history(session, principal, thread_id, message_id)

    @post("/{thread_id:uuid}/read", status_code=200, summary="Mark every message of the thread read by the caller")
    async def mark_read(self, session: Db, principal: Caller, thread_id: FromPath[uuid.UUID]) -> ThreadOut:
        return await service.mark_read(session, principal, thread_id)

    @get(
        "/{thread_id:uuid}/attachments/{attachment_id:uuid}",
        summary="An attachment's bytes (a download, checked against its sha256)",
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
        meta, data = await service.read_attachment(session, principal, thread_id, attachment_id, blob_store(settings))
        return Response(content=data, media_type=meta.content_type, headers=download_headers(meta))
