"""Secure messaging: threads about a patient between care-team members, the patient optionally taking part.

Only participants see a thread: anyone else (a colleague who does not take part, another tenant, a patient
of another record) gets the same 404 as for a missing thread. Messages are never changed: an edit adds a new
version with the same ``original_id``, a delete adds a tombstone version; the current version of a message
is its highest. Receipts are kept per participant and message (its original id).

A portal patient (``principal.is_patient``) acts as the thread's patient participant, and only in threads
about their own record that include them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit, outbox, staff
from core.careteams.models import CareTeam, CareTeamMember
from core.db import utcnow
from core.errors import Conflict, DomainError, Forbidden, InvalidInput
from core.messaging.blobs import BlobError, BlobStore, digest
from core.messaging.models import Message, MessageAttachment, MessageReceipt, Thread, ThreadParticipant
from core.messaging.schemas import (
    MAX_MESSAGE_ATTACHMENT_BYTES,
    AttachmentIn,
    AttachmentOut,
    AuthorOut,
    MessageCreate,
    MessageEdit,
    MessageOut,
    ParticipantOut,
    ReceiptOut,
    ThreadCreate,
    ThreadOut,
)
from core.patients.models import Patient
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records
from tenants.models import Membership

log = logging.getLogger("carehub.messaging")

RESOURCE = "Thread"
MESSAGE = "Message"
ATTACHMENT = "MessageAttachment"
THREAD_NOT_FOUND = "thread not found"
# Threads are shaped with their participants and names, so their descriptors give no shape.
THREADS: Records[Thread, ThreadOut] = Records(
    model=Thread, resource_type=RESOURCE, permission="threads", not_found=THREAD_NOT_FOUND
)
MESSAGES: Records[Message, MessageOut] = Records(
    model=Message, resource_type=MESSAGE, permission="threads", not_found="message not found"
)
ATTACHMENTS: Records[MessageAttachment, AttachmentOut] = Records(
    model=MessageAttachment, resource_type=ATTACHMENT, permission="threads", not_found="attachment not found"
)
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
class _Access:
    """A thread the caller takes part in, its participants, and the caller's own participant row."""

    thread: Thread
    participants: list[ThreadParticipant]
    me: ThreadParticipant


@dataclass
class _Upload:
    name: str
    content_type: str
    data: bytes


def _require(principal: Principal, act: str) -> None:
    principal.require("portal" if principal.is_patient else "threads", act)


def _my_participant(
    principal: Principal, thread: Thread, participants: Iterable[ThreadParticipant]
) -> ThreadParticipant | None:
    for participant in participants:
        if principal.is_patient:
            if participant.is_patient and thread.patient_id == principal.patient_id:
                return participant
        elif not participant.is_patient and participant.user_id == principal.user_id:
            return participant
    return None


async def _participants(
    session: AsyncSession, thread_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ThreadParticipant]]:
    found: dict[uuid.UUID, list[ThreadParticipant]] = defaultdict(list)
    if thread_ids:
        rows = await session.scalars(
            select(ThreadParticipant)
            .where(ThreadParticipant.thread_id.in_(thread_ids))
            .order_by(ThreadParticipant.added_at, ThreadParticipant.id)
        )
        for row in rows:
            found[row.thread_id].append(row)
    return found


async def _load(session: AsyncSession, principal: Principal, thread_id: uuid.UUID, action: str) -> _Access:
    """The thread if the caller takes part in it; otherwise (missing, another tenant's, not a participant) 404."""
    thread = await session.get(Thread, thread_id)
    if thread is not None:
        participants = (await _participants(session, [thread.id]))[thread.id]
        me = _my_participant(principal, thread, participants)
        if me is not None:
            return _Access(thread, participants, me)
    raise THREADS.refuse(session, principal, thread_id, action, patient_id=thread.patient_id if thread else None)


# --- names and output shapes ---------------------------------------------------------------------------------------


async def _names(
    session: AsyncSession, threads: Iterable[Thread], participants: Iterable[ThreadParticipant]
) -> dict[uuid.UUID, str]:
    """Display names by participant id: staff by their user name, the patient by the record's name."""
    people = list(participants)
    users = await staff.names(session, (p.user_id for p in people))
    patient_ids = {t.patient_id for t in threads}
    patients: dict[uuid.UUID, str] = {}
    if patient_ids and any(p.is_patient for p in people):
        rows = await session.execute(
            select(Patient.id, Patient.given_name, Patient.family_name).where(Patient.id.in_(patient_ids))
        )
        patients = {row[0]: f"{row[1]} {row[2]}" for row in rows.all()}
    by_thread = {t.id: t.patient_id for t in threads}
    names: dict[uuid.UUID, str] = {}
    for person in people:
        if person.is_patient:
            names[person.id] = patients.get(by_thread[person.thread_id], "patient")
        else:
            names[person.id] = users.get(person.user_id, "former member") if person.user_id else "former member"
    return names


def _current_version() -> ColumnElement[bool]:
    later = aliased(Message)
    return ~exists().where(later.original_id == Message.original_id, later.version > Message.version)


def _unread_for(participant_ids: Sequence[uuid.UUID]) -> list[ColumnElement[bool]]:
    """Current, not deleted, written by someone else and without a receipt of the caller's participant."""
    return [
        _current_version(),
        Message.deleted.is_(False),
        Message.author_participant_id.not_in(participant_ids),
        ~exists().where(
            MessageReceipt.message_original_id == Message.original_id,
            MessageReceipt.participant_id.in_(participant_ids),
        ),
    ]


async def _unread_counts(session: AsyncSession, mine: dict[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, int]:
    """Unread messages per thread id, for the caller's participant in each thread (thread id -> participant id)."""
    if not mine:
        return {}
    rows = await session.execute(
        select(Message.thread_id, func.count())
        .where(Message.thread_id.in_(list(mine)), *_unread_for(list(mine.values())))
        .group_by(Message.thread_id)
    )
    return {row[0]: int(row[1]) for row in rows.all()}


def _thread_out(
    thread: Thread, participants: list[ThreadParticipant], names: dict[uuid.UUID, str], unread: int
) -> ThreadOut:
    return ThreadOut(
        id=thread.id,
        patient_id=thread.patient_id,
        subject=thread.subject,
        created_by=thread.created_by,
        created_at=thread.created_at,
        last_message_at=thread.last_message_at,
        includes_patient=any(p.is_patient for p in participants),
        participants=[
            ParticipantOut(id=p.id, user_id=p.user_id, name=names[p.id], is_patient=p.is_patient) for p in participants
        ],
        unread_count=unread,
        data_category=thread.data_category,
    )


async def _access_out(session: AsyncSession, access: _Access) -> ThreadOut:
    names = await _names(session, [access.thread], access.participants)
    unread = await _unread_counts(session, {access.thread.id: access.me.id})
    return _thread_out(access.thread, access.participants, names, unread.get(access.thread.id, 0))


@dataclass
class _MessageContext:
    """What message outputs of one thread need: participants with names, attachments and receipts."""

    participants: dict[uuid.UUID, ThreadParticipant]
    names: dict[uuid.UUID, str]
    attachments: dict[uuid.UUID, list[MessageAttachment]]
    receipts: dict[uuid.UUID, list[MessageReceipt]]


async def _context(session: AsyncSession, access: _Access, versions: Sequence[Message]) -> _MessageContext:
    originals = {m.original_id for m in versions}
    attachments: dict[uuid.UUID, list[MessageAttachment]] = defaultdict(list)
    receipts: dict[uuid.UUID, list[MessageReceipt]] = defaultdict(list)
    if originals:
        version_of = {m.id: m.original_id for m in versions}
        rows = await session.scalars(
            select(MessageAttachment)
            .where(MessageAttachment.message_id.in_(list(version_of)))
            .order_by(MessageAttachment.name, MessageAttachment.id)
        )
        for attachment in rows:
            attachments[version_of[attachment.message_id]].append(attachment)
        read = await session.scalars(
            select(MessageReceipt)
            .where(MessageReceipt.message_original_id.in_(originals))
            .order_by(MessageReceipt.read_at, MessageReceipt.id)
        )
        for receipt in read:
            receipts[receipt.message_original_id].append(receipt)
    names = await _names(session, [access.thread], access.participants)
    return _MessageContext({p.id: p for p in access.participants}, names, attachments, receipts)


def _message_out(message: Message, context: _MessageContext) -> MessageOut:
    author = context.participants[message.author_participant_id]
    return MessageOut(
        id=message.id,
        original_id=message.original_id,
        thread_id=message.thread_id,
        version=message.version,
        author=AuthorOut(
            participant_id=author.id,
            user_id=author.user_id,
            name=context.names[author.id],
            is_patient=author.is_patient,
        ),
        body=None if message.deleted else message.body,
        deleted=message.deleted,
        edited=message.version > 1 and not message.deleted,
        sent_at=message.sent_at,
        attachments=[]
        if message.deleted
        else [
            AttachmentOut(id=a.id, name=a.name, content_type=a.content_type, size=a.size, sha256=a.sha256)
            for a in context.attachments.get(message.original_id, [])
        ],
        read_by=[
            ReceiptOut(participant_id=r.participant_id, read_at=r.read_at)
            for r in context.receipts.get(message.original_id, [])
        ],
    )


# --- input checks --------------------------------------------------------------------------------------------------


def _check_body(body: str, field: str = "body") -> str:
    if not body.strip():
        raise InvalidInput("a message needs some text", field=field)
    return body


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


def _check_attachments(items: Sequence[AttachmentIn]) -> list[_Upload]:
    """Decode and check every attachment before anything is stored; the first bad one refuses the message."""
    uploads: list[_Upload] = []
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
        uploads.append(_Upload(item.name, content_type, data))
        if sum(len(u.data) for u in uploads) > MAX_MESSAGE_ATTACHMENT_BYTES:
            raise InvalidInput(
                f"a message's attachments together are at most {MAX_MESSAGE_ATTACHMENT_BYTES // (1024 * 1024)} MiB",
                field=f"{where}.data",
            )
    return uploads


async def _store(blobs: BlobStore, data: bytes) -> str:
    try:
        return await anyio.to_thread.run_sync(blobs.put, data)
    except (BlobError, OSError) as exc:
        log.error("blob store refused an attachment: %s", exc)
        raise AttachmentUnavailable("the attachment could not be stored; retry later") from None


# --- writing messages ----------------------------------------------------------------------------------------------


async def _post(
    session: AsyncSession,
    access: _Access,
    body: str,
    uploads: list[_Upload],
    blobs: BlobStore,
) -> tuple[Message, list[MessageAttachment]]:
    """Add a first version of a message (and its attachments) to the thread, by the caller."""
    now = utcnow()
    message_id = uuid.uuid4()
    message = Message(
        id=message_id,
        thread_id=access.thread.id,
        original_id=message_id,
        version=1,
        author_participant_id=access.me.id,
        body=body,
        deleted=False,
        sent_at=now,
    )
    session.add(message)
    access.thread.last_message_at = now
    await session.flush()
    attachments: list[MessageAttachment] = []
    for upload in uploads:
        # The bytes go first: if anything later fails, a stored blob nobody refers to is harmless.
        key = await _store(blobs, upload.data)
        attachment = MessageAttachment(
            id=uuid.uuid4(),
            message_id=message.id,
            name=upload.name,
            content_type=upload.content_type,
            size=len(upload.data),
            sha256=digest(upload.data),
            blob_key=key,
        )
        session.add(attachment)
        attachments.append(attachment)
    await session.flush()
    return message, attachments


async def _sent(session: AsyncSession, principal: Principal, access: _Access, message: Message, count: int) -> None:
    thread = access.thread
    # Only members still active on the staff are told (a removed member stays in the thread's record).
    others = [p.user_id for p in access.participants if p.user_id is not None and p.id != access.me.id]
    active = set(await staff.active_staff(session, others))
    audit.record(
        session,
        principal.actor,
        action="message.send",
        resource_type=MESSAGE,
        resource_id=message.id,
        patient_id=thread.patient_id,
        detail={"thread_id": str(thread.id), "attachments": count},
    )
    outbox.emit(
        session,
        "message.sent",
        {
            "thread_id": str(thread.id),
            "message_id": str(message.id),
            "patient_id": str(thread.patient_id),
            "author_participant_id": str(access.me.id),
            "recipient_user_ids": [str(user_id) for user_id in others if user_id in active],
            "patient_is_recipient": any(p.is_patient and p.id != access.me.id for p in access.participants),
        },
        aggregate_id=thread.patient_id,
    )


async def _care_team_users(session: AsyncSession, patient_id: uuid.UUID) -> list[uuid.UUID]:
    """The active staff members on the patient's care team, in the team's order."""
    rows = await session.scalars(
        select(CareTeamMember.user_id)
        .join(CareTeam, CareTeam.id == CareTeamMember.team_id)
        .join(Membership, Membership.user_id == CareTeamMember.user_id)
        .where(
            CareTeam.patient_id == patient_id,
            CareTeam.status == "active",
            Membership.is_active.is_(True),
            Membership.patient_id.is_(None),
        )
        .order_by(CareTeamMember.created_at, CareTeamMember.id)
    )
    return [u for u in rows if u is not None]


async def create_thread(session: AsyncSession, principal: Principal, data: ThreadCreate, blobs: BlobStore) -> ThreadOut:
    """A thread with its first message. Staff: the caller, the named staff, and the patient if included.
    A portal patient: the patient and every staff member of their care team (409 when there is none)."""
    _require(principal, "write")
    if not data.subject.strip():
        raise InvalidInput("a thread needs a subject", field="subject")
    body = _check_body(data.body)
    if principal.is_patient:
        assert principal.patient_id is not None
        if data.patient_id not in (None, principal.patient_id):
            raise InvalidInput("a patient writes about their own record only: leave patient_id out", field="patient_id")
        if data.participant_user_ids:
            raise InvalidInput("a patient's thread goes to their care team", field="participant_user_ids")
        patient_id = principal.patient_id
        users = await _care_team_users(session, patient_id)
        if not users:
            raise Conflict("you have no care team to write to yet", field="patient_id")
        include_patient = True
    else:
        if data.patient_id is None:
            raise InvalidInput("patient_id is required", field="patient_id")
        patient_id = (await require_patient(session, principal, data.patient_id, "thread.create", active=True)).id
        users = [principal.user_id]
        for index, user_id in enumerate(data.participant_user_ids):
            await staff.require_staff(session, user_id, f"participant_user_ids[{index}]")
            if user_id not in users:
                users.append(user_id)
        include_patient = data.include_patient
    uploads = _check_attachments(data.attachments)

    now = utcnow()
    thread = Thread(
        id=uuid.uuid4(),
        patient_id=patient_id,
        subject=data.subject,
        created_by=principal.user_id,
        created_at=now,
        last_message_at=now,
        data_category=data.data_category,
    )
    participants = [
        ThreadParticipant(id=uuid.uuid4(), thread_id=thread.id, user_id=u, is_patient=False, added_at=now)
        for u in users
    ]
    if include_patient:
        participants.append(
            ThreadParticipant(id=uuid.uuid4(), thread_id=thread.id, user_id=None, is_patient=True, added_at=now)
        )
    session.add(thread)
    await session.flush()
    session.add_all(participants)
    await session.flush()
    me = _my_participant(principal, thread, participants)
    assert me is not None
    access = _Access(thread, participants, me)
    audit.record(
        session,
        principal.actor,
        action="thread.create",
        resource_type=RESOURCE,
        resource_id=thread.id,
        patient_id=patient_id,
        detail={"participants": len(participants), "includes_patient": include_patient},
    )
    outbox.emit(
        session,
        "thread.created",
        {
            "thread_id": str(thread.id),
            "patient_id": str(patient_id),
            "participant_user_ids": [str(u) for u in users],
            "includes_patient": include_patient,
        },
        aggregate_id=patient_id,
    )
    message, attachments = await _post(session, access, body, uploads, blobs)
    await _sent(session, principal, access, message, len(attachments))
    return await _access_out(session, access)


async def send_message(
    session: AsyncSession,
    principal: Principal,
    thread_id: uuid.UUID,
    data: MessageCreate,
    blobs: BlobStore,
) -> MessageOut:
    _require(principal, "write")
    access = await _load(session, principal, thread_id, "message.send")
    body = _check_body(data.body)
    uploads = _check_attachments(data.attachments)
    message, attachments = await _post(session, access, body, uploads, blobs)
    await _sent(session, principal, access, message, len(attachments))
    return _message_out(message, await _context(session, access, [message]))


async def _versions(
    session: AsyncSession, principal: Principal, access: _Access, message_id: uuid.UUID, action: str
) -> list[Message]:
    """Every version of the message (any of whose version ids is given) in this thread, oldest first."""
    found = await session.get(Message, message_id)
    if found is None or found.thread_id != access.thread.id:
        raise MESSAGES.refuse(session, principal, message_id, action, patient_id=access.thread.patient_id)
    rows = await session.scalars(
        select(Message)
        .where(Message.original_id == found.original_id, Message.thread_id == access.thread.id)
        .order_by(Message.version)
    )
    return list(rows)


def _author_only(access: _Access, current: Message, action: str) -> None:
    if current.author_participant_id != access.me.id:
        raise Forbidden(f"only the author may {action.split('.')[1]} a message", action=action, resource_type=MESSAGE)


async def _new_version(
    session: AsyncSession,
    principal: Principal,
    access: _Access,
    versions: list[Message],
    body: str | None,
    action: str,
    topic: str,
) -> MessageOut:
    current = versions[-1]
    version = Message(
        id=uuid.uuid4(),
        thread_id=access.thread.id,
        original_id=current.original_id,
        version=current.version + 1,
        author_participant_id=access.me.id,
        body=body,
        deleted=body is None,
        sent_at=utcnow(),
    )
    session.add(version)
    await session.flush()
    thread = access.thread
    audit.record(
        session,
        principal.actor,
        action=action,
        resource_type=MESSAGE,
        resource_id=current.original_id,
        patient_id=thread.patient_id,
        detail={"thread_id": str(thread.id), "version": version.version},
    )
    outbox.emit(
        session,
        topic,
        {
            "thread_id": str(thread.id),
            "message_id": str(version.id),
            "original_id": str(version.original_id),
            "version": version.version,
            "patient_id": str(thread.patient_id),
        },
        aggregate_id=thread.patient_id,
    )
    return _message_out(version, await _context(session, access, [*versions, version]))


async def edit_message(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID, data: MessageEdit
) -> MessageOut:
    """The author's new version of a message (the earlier ones stay in its history)."""
    _require(principal, "write")
    access = await _load(session, principal, thread_id, "message.edit")
    versions = await _versions(session, principal, access, message_id, "message.edit")
    _author_only(access, versions[-1], "message.edit")
    if versions[-1].deleted:
        raise Conflict("the message was deleted; it cannot be edited")
    body = _check_body(data.body)
    return await _new_version(session, principal, access, versions, body, "message.edit", "message.edited")


async def delete_message(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID
) -> MessageOut:
    """The author's tombstone for a message (deleting it again answers the same tombstone)."""
    _require(principal, "write")
    access = await _load(session, principal, thread_id, "message.delete")
    versions = await _versions(session, principal, access, message_id, "message.delete")
    _author_only(access, versions[-1], "message.delete")
    if versions[-1].deleted:
        return _message_out(versions[-1], await _context(session, access, versions))
    return await _new_version(session, principal, access, versions, None, "message.delete", "message.deleted")


async def message_history(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID
) -> list[MessageOut]:
    """Every version of a message, oldest first."""
    _require(principal, "read")
    access = await _load(session, principal, thread_id, "message.history")
    versions = await _versions(session, principal, access, message_id, "message.history")
    audit.record(
        session,
        principal.actor,
        action="message.history",
        resource_type=MESSAGE,
        resource_id=versions[0].original_id,
        patient_id=access.thread.patient_id,
    )
    context = await _context(session, access, versions)
    if versions[-1].deleted:
        # The earlier texts stay in the database (messages are never changed) but are no longer shown.
        return [_message_out(v, context) for v in versions if v.deleted]
    return [_message_out(v, context) for v in versions]


# --- reading threads and messages ----------------------------------------------------------------------------------


async def list_threads(
    session: AsyncSession,
    principal: Principal,
    *,
    patient_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ThreadOut]:
    """The threads the caller takes part in, most recent message first."""
    _require(principal, "read")
    query = select(Thread, ThreadParticipant.id).join(ThreadParticipant, ThreadParticipant.thread_id == Thread.id)
    if principal.is_patient:
        query = query.where(ThreadParticipant.is_patient.is_(True), Thread.patient_id == principal.patient_id)
    else:
        query = query.where(ThreadParticipant.user_id == principal.user_id)
    if patient_id is not None:
        query = query.where(Thread.patient_id == patient_id)
    query = query.order_by(Thread.last_message_at.desc(), Thread.id).limit(limit).offset(offset)
    rows = (await session.execute(query)).all()
    threads = [row[0] for row in rows]
    mine = {row[0].id: row[1] for row in rows}
    participants = await _participants(session, list(mine))
    names = await _names(session, threads, (p for ps in participants.values() for p in ps))
    unread = await _unread_counts(session, mine)
    for thread in threads:
        THREADS.audit(session, principal, thread, "thread.list")
    return [_thread_out(t, participants[t.id], names, unread.get(t.id, 0)) for t in threads]


async def get_thread(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> ThreadOut:
    _require(principal, "read")
    access = await _load(session, principal, thread_id, "thread.read")
    THREADS.audit(session, principal, access.thread, "thread.read")
    return await _access_out(session, access)


async def list_messages(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, *, limit: int = 50, offset: int = 0
) -> list[MessageOut]:
    """The current version of each message of the thread, in the order they were first sent (a page of them)."""
    _require(principal, "read")
    access = await _load(session, principal, thread_id, "message.list")
    page = (
        select(Message.original_id)
        .where(Message.thread_id == access.thread.id, Message.version == 1)
        .order_by(Message.sent_at, Message.id)
        .limit(limit)
        .offset(offset)
    )
    wanted = list(await session.scalars(page))
    rows = await session.scalars(
        select(Message)
        .where(Message.thread_id == access.thread.id, Message.original_id.in_(wanted))
        .order_by(Message.sent_at, Message.version)
    )
    versions = list(rows) if wanted else []
    first: dict[uuid.UUID, Message] = {}
    current: dict[uuid.UUID, Message] = {}
    for message in versions:
        first.setdefault(message.original_id, message)
        if message.original_id not in current or message.version > current[message.original_id].version:
            current[message.original_id] = message
    THREADS.audit(session, principal, access.thread, "message.list", messages=len(current))
    context = await _context(session, access, versions)
    order = sorted(first.values(), key=lambda m: (m.sent_at, m.id))
    return [_message_out(current[m.original_id], context) for m in order]


async def mark_read(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> ThreadOut:
    """Receipts, for the caller, of every current message of the thread written by someone else and not yet read."""
    _require(principal, "read")
    access = await _load(session, principal, thread_id, "thread.mark_read")
    unread = select(Message.original_id).where(Message.thread_id == access.thread.id, *_unread_for([access.me.id]))
    originals: list[uuid.UUID] = []
    for attempt in (1, 2):
        # Another request of the same reader (a second tab) may be writing the same receipts: read again once.
        originals = list(await session.scalars(unread))
        now = utcnow()
        try:
            async with session.begin_nested():
                session.add_all(
                    MessageReceipt(id=uuid.uuid4(), message_original_id=o, participant_id=access.me.id, read_at=now)
                    for o in originals
                )
            break
        except IntegrityError:
            if attempt == 2:
                raise
    THREADS.audit(session, principal, access.thread, "thread.mark_read", messages=len(originals))
    await session.flush()
    return await _access_out(session, access)


async def add_participant(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, user_id: uuid.UUID
) -> ThreadOut:
    """Add a staff member of the tenant to a thread the caller takes part in (staff only)."""
    principal.require("threads", "write")
    access = await _load(session, principal, thread_id, "thread.add_participant")
    await staff.require_staff(session, user_id, "user_id")
    if any(p.user_id == user_id for p in access.participants):
        raise Conflict("this user already takes part in the thread", field="user_id")
    participant = ThreadParticipant(
        id=uuid.uuid4(), thread_id=access.thread.id, user_id=user_id, is_patient=False, added_at=utcnow()
    )
    session.add(participant)
    await session.flush()
    access.participants.append(participant)
    THREADS.audit(session, principal, access.thread, "thread.add_participant", user_id=str(user_id))
    outbox.emit(
        session,
        "thread.participant_added",
        {"thread_id": str(access.thread.id), "patient_id": str(access.thread.patient_id), "user_id": str(user_id)},
        aggregate_id=access.thread.patient_id,
    )
    return await _access_out(session, access)


async def read_attachment(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, attachment_id: uuid.UUID, blobs: BlobStore
) -> tuple[AttachmentOut, bytes]:
    """An attachment's metadata and bytes, checked against its sha256; a deleted message's attachments are gone."""
    _require(principal, "read")
    access = await _load(session, principal, thread_id, "attachment.read")
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
