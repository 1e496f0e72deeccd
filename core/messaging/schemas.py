"""Input and output shapes of secure messaging (msgspec structs, unknown fields refused).

Attachments are checked by the service (name, type, base64, size), so that a bad one is refused with 422
naming it, e.g. ``attachments[1].data``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from core.careplans.schemas import SensitiveLabel
from core.inputs import SAFE_LINE, SAFE_TEXT

Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000, pattern=SAFE_TEXT)]
MAX_ATTACHMENTS = 10
# All the attachments of one message together (each is at most 5 MiB), and the request that carries them
# in base64 (4 bytes for every 3) with room for the rest of the message.
MAX_MESSAGE_ATTACHMENT_BYTES = 10 * 1024 * 1024
MESSAGE_REQUEST_LIMIT = 4 * MAX_MESSAGE_ATTACHMENT_BYTES // 3 + 256 * 1024


class AttachmentIn(msgspec.Struct, forbid_unknown_fields=True):
    """A file sent with a message: ``data`` is its content in base64; its sha256 is computed on arrival."""

    name: str
    content_type: str
    data: str


Attachments = Annotated[list[AttachmentIn], msgspec.Meta(max_length=MAX_ATTACHMENTS)]


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new thread and its first message.

    Staff name the patient and the other staff participants (the caller always takes part), and include the
    patient or not. A portal patient omits ``patient_id`` (or gives their own); their care team takes part.
    """

    subject: Subject
    body: Body
    patient_id: uuid.UUID | None = None
    participant_user_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    include_patient: bool = False
    attachments: Attachments = msgspec.field(default_factory=list)
    data_category: SensitiveLabel | None = None


class MessageCreate(msgspec.Struct, forbid_unknown_fields=True):
    body: Body
    attachments: Attachments = msgspec.field(default_factory=list)


class MessageEdit(msgspec.Struct, forbid_unknown_fields=True):
    body: Body


class ParticipantAdd(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID


class ParticipantOut(msgspec.Struct):
    id: uuid.UUID
    user_id: uuid.UUID | None
    name: str
    is_patient: bool


class ThreadOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    subject: str
    created_by: uuid.UUID | None
    created_at: datetime
    last_message_at: datetime
    includes_patient: bool
    participants: list[ParticipantOut]
    unread_count: int
    data_category: str | None


class AuthorOut(msgspec.Struct):
    participant_id: uuid.UUID
    user_id: uuid.UUID | None
    name: str
    is_patient: bool


class AttachmentOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    content_type: str
    size: int
    sha256: str


class ReceiptOut(msgspec.Struct):
    participant_id: uuid.UUID
    read_at: datetime


class MessageOut(msgspec.Struct):
    """One version of a message; a deleted one (tombstone) has no body and no attachments."""

    id: uuid.UUID
    original_id: uuid.UUID
    thread_id: uuid.UUID
    version: int
    author: AuthorOut
    body: str | None
    deleted: bool
    edited: bool
    sent_at: datetime
    attachments: list[AttachmentOut]
    read_by: list[ReceiptOut]
