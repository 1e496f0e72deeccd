"""Reading threads and messages: their output shapes (names, unread counts, receipts) and the read operations."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit, staff
from core.db import utcnow
from core.messaging.access import (
    MESSAGE,
    THREADS,
    Access,
    message_versions,
    participants_of,
    require_act,
    thread_access,
)
from core.messaging.models import Message, MessageAttachment, MessageReceipt, Thread, ThreadParticipant
from core.messaging.schemas import AttachmentOut, AuthorOut, MessageOut, ParticipantOut, ReceiptOut, ThreadOut
from core.patients.models import Patient
from core.principal import Principal


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


async def access_out(session: AsyncSession, access: Access) -> ThreadOut:
    names = await _names(session, [access.thread], access.participants)
    unread = await _unread_counts(session, {access.thread.id: access.me.id})
    return _thread_out(access.thread, access.participants, names, unread.get(access.thread.id, 0))


@dataclass
class MessageContext:
    """What message outputs of one thread need: participants with names, attachments and receipts."""

    participants: dict[uuid.UUID, ThreadParticipant]
    names: dict[uuid.UUID, str]
    attachments: dict[uuid.UUID, list[MessageAttachment]]
    receipts: dict[uuid.UUID, list[MessageReceipt]]


async def message_context(session: AsyncSession, access: Access, versions: Sequence[Message]) -> MessageContext:
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
    return MessageContext({p.id: p for p in access.participants}, names, attachments, receipts)


def message_out(message: Message, context: MessageContext) -> MessageOut:
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


async def message_history(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID
) -> list[MessageOut]:
    """Every version of a message, oldest first."""
    require_act(principal, "read")
    access = await thread_access(session, principal, thread_id, "message.history")
    versions = await message_versions(session, principal, access, message_id, "message.history")
    audit.record(
        session,
        principal.actor,
        action="message.history",
        resource_type=MESSAGE,
        resource_id=versions[0].original_id,
        patient_id=access.thread.patient_id,
    )
    context = await message_context(session, access, versions)
    if versions[-1].deleted:
        # The earlier texts stay in the database (messages are never changed) but are no longer shown.
        return [message_out(v, context) for v in versions if v.deleted]
    return [message_out(v, context) for v in versions]


async def list_threads(
    session: AsyncSession,
    principal: Principal,
    *,
    patient_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ThreadOut]:
    """The threads the caller takes part in, most recent message first."""
    require_act(principal, "read")
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
    participants = await participants_of(session, list(mine))
    names = await _names(session, threads, (p for ps in participants.values() for p in ps))
    unread = await _unread_counts(session, mine)
    for thread in threads:
        THREADS.audit(session, principal, thread, "thread.list")
    return [_thread_out(t, participants[t.id], names, unread.get(t.id, 0)) for t in threads]


async def get_thread(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> ThreadOut:
    require_act(principal, "read")
    access = await thread_access(session, principal, thread_id, "thread.read")
    THREADS.audit(session, principal, access.thread, "thread.read")
    return await access_out(session, access)


async def list_messages(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, *, limit: int = 50, offset: int = 0
) -> list[MessageOut]:
    """The current version of each message of the thread, in the order they were first sent (a page of them)."""
    require_act(principal, "read")
    access = await thread_access(session, principal, thread_id, "message.list")
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
    context = await message_context(session, access, versions)
    order = sorted(first.values(), key=lambda m: (m.sent_at, m.id))
    return [message_out(current[m.original_id], context) for m in order]


async def mark_read(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> ThreadOut:
    """Receipts, for the caller, of every current message of the thread written by someone else and not yet read."""
    require_act(principal, "read")
    access = await thread_access(session, principal, thread_id, "thread.mark_read")
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
    return await access_out(session, access)
