"""Who may see a thread: its participants only; anyone else gets the same audited 404 as for a missing thread."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.messaging.models import Message, MessageAttachment, Thread, ThreadParticipant
from core.messaging.schemas import AttachmentOut, MessageOut, ThreadOut
from core.principal import Principal
from core.records import Records

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


@dataclass
class Access:
    """A thread the caller takes part in, its participants, and the caller's own participant row."""

    thread: Thread
    participants: list[ThreadParticipant]
    me: ThreadParticipant


def require_act(principal: Principal, act: str) -> None:
    principal.require("portal" if principal.is_patient else "threads", act)


def my_participant(
    principal: Principal, thread: Thread, participants: Iterable[ThreadParticipant]
) -> ThreadParticipant | None:
    for participant in participants:
        if principal.is_patient:
            if participant.is_patient and thread.patient_id == principal.patient_id:
                return participant
        elif not participant.is_patient and participant.user_id == principal.user_id:
            return participant
    return None


async def participants_of(
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


async def thread_access(session: AsyncSession, principal: Principal, thread_id: uuid.UUID, action: str) -> Access:
    """The thread if the caller takes part in it; otherwise (missing, another tenant's, not a participant) 404."""
    thread = await session.get(Thread, thread_id)
    if thread is not None:
        participants = (await participants_of(session, [thread.id]))[thread.id]
        me = my_participant(principal, thread, participants)
        if me is not None:
            return Access(thread, participants, me)
    raise THREADS.refuse(session, principal, thread_id, action, patient_id=thread.patient_id if thread else None)


async def message_versions(
    session: AsyncSession, principal: Principal, access: Access, message_id: uuid.UUID, action: str
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
