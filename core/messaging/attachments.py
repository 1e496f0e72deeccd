"""Message attachments: checked and decoded before anything is stored, read back against their checksum."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import DomainError, InvalidInput
from core.messaging.access import ATTACHMENT, ATTACHMENTS, require_act, thread_access
from core.messaging.blobs import BlobError, BlobStore, digest
from core.messaging.models import Message, MessageAttachment
from core.messaging.schemas import MAX_MESSAGE_ATTACHMENT_BYTES, AttachmentIn, AttachmentOut
from core.principal import Principal

log = logging.getLogger("carehub.messaging")

MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
_MAX_BASE64 = 4 * -(-MAX_ATTACHMENT_BYTES // 3)
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")
# Control characters, and the bidirectional overrides that make "txt.exe" look like "exe.txt".
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class AttachmentUnavailable(DomainError):
    """The blob store cannot give back (or keep) an attachment's bytes, or they no longer match their checksum."""

    status = 503
    title = "Attachment unavailable"


@dataclass
class Upload:
    name: str
    content_type: str
    data: bytes


def _name_problem(name: str) -> str | None:
    if not name or len(name) > 255:
        return "a file name has 1 to 255 characters"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "a file name has no path (no / or \\)"
    if _CONTROL.search(name):
        return "a file name has no control characters"
    if name != name.strip():
        return "a file name does not start or end with spaces"
    return None


def check_attachments(items: Sequence[AttachmentIn]) -> list[Upload]:
    """Decode and check every attachment before anything is stored; the first bad one refuses the message."""
    uploads: list[Upload] = []
    for index, item in enumerate(items):
        where = f"attachments[{index}]"
        problem = _name_problem(item.name)
        if problem:
            raise InvalidInput(problem, field=f"{where}.name")
        content_type = item.content_type.strip().lower()
        if not _MEDIA_TYPE.fullmatch(content_type):
            raise InvalidInput("not a media type such as application/pdf", field=f"{where}.content_type")
        too_big = f"an attachment is at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB"
        if len(item.data) > _MAX_BASE64:
            raise InvalidInput(too_big, field=f"{where}.data")
        try:
            data = base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                "not valid base64 (standard alphabet, padded, no line breaks)", field=f"{where}.data"
            ) from None
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise InvalidInput(too_big, field=f"{where}.data")
        uploads.append(Upload(item.name, content_type, data))
        if sum(len(u.data) for u in uploads) > MAX_MESSAGE_ATTACHMENT_BYTES:
            raise InvalidInput(
                f"a message's attachments together are at most {MAX_MESSAGE_ATTACHMENT_BYTES // (1024 * 1024)} MiB",
                field=f"{where}.data",
            )
    return uploads


async def store_blob(blobs: BlobStore, data: bytes) -> str:
    try:
        return await anyio.to_thread.run_sync(blobs.put, data)
    except (BlobError, OSError) as exc:
        log.error("blob store refused an attachment: %s", exc)
        raise AttachmentUnavailable("the attachment could not be stored; retry later") from None


async def read_attachment(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, attachment_id: uuid.UUID, blobs: BlobStore
) -> tuple[AttachmentOut, bytes]:
    """An attachment's metadata and bytes, checked against its sha256; a deleted message's attachments are gone."""
    require_act(principal, "read")
    access = await thread_access(session, principal, thread_id, "attachment.read")
    patient_id = access.thread.patient_id
    attachment = await session.get(MessageAttachment, attachment_id)
    message = await session.get(Message, attachment.message_id) if attachment is not None else None
    withdrawn = message is not None and await session.scalar(
        select(Message.id).where(Message.original_id == message.original_id, Message.deleted.is_(True)).limit(1)
    )
    if attachment is None or message is None or message.thread_id != access.thread.id or withdrawn:
        raise ATTACHMENTS.refuse(session, principal, attachment_id, "attachment.read", patient_id=patient_id)
    problem: str | None = None
    data = b""
    try:
        data = await anyio.to_thread.run_sync(blobs.get, attachment.blob_key)
    except (BlobError, OSError) as exc:
        problem = f"content unreadable: {exc}"
    if problem is None and (len(data) != attachment.size or digest(data) != attachment.sha256):
        problem = "content does not match its sha256"
    if problem is not None:
        log.error("attachment %s: %s", attachment.id, problem)
        audit.record_failure(
            session,
            principal.actor,
            action="attachment.read",
            resource_type=ATTACHMENT,
            resource_id=attachment.id,
            patient_id=patient_id,
            outcome="failure",
            reason=problem[:500],
        )
        raise AttachmentUnavailable("the attachment's content is missing or damaged in the file store")
    audit.record(
        session,
        principal.actor,
        action="attachment.read",
        resource_type=ATTACHMENT,
        resource_id=attachment.id,
        patient_id=patient_id,
    )
    out = AttachmentOut(
        id=attachment.id,
        name=attachment.name,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
    )
    return out, data
