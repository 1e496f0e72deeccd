"""Writing: new threads, messages, their new versions (edits and tombstones) and new participants."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox, staff
from core.careteams.models import CareTeam, CareTeamMember
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput
from core.messaging.access import (
    MESSAGE,
    RESOURCE,
    THREADS,
    Access,
    message_versions,
    my_participant,
    require_act,
    thread_access,
)
from core.messaging.attachments import Upload, check_attachments, store_blob
from core.messaging.blobs import BlobStore, digest
from core.messaging.models import Message, MessageAttachment, Thread, ThreadParticipant
from core.messaging.schemas import MessageCreate, MessageEdit, MessageOut, ThreadCreate, ThreadOut
from core.messaging.views import access_out, message_context, message_out
from core.patients.service import require_patient
from core.principal import Principal
from tenants.models import Membership


def _check_body(body: str, field: str = "body") -> str:
    if not body.strip():
        raise InvalidInput("a message needs some text", field=field)
    return body


async def _post(
    session: AsyncSession,
    access: Access,
    body: str,
    uploads: list[Upload],
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
        key = await store_blob(blobs, upload.data)
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


async def _sent(session: AsyncSession, principal: Principal, access: Access, message: Message, count: int) -> None:
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
    require_act(principal, "write")
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
    uploads = check_attachments(data.attachments)

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
    me = my_participant(principal, thread, participants)
    assert me is not None
    access = Access(thread, participants, me)
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
    return await access_out(session, access)


async def send_message(
    session: AsyncSession,
    principal: Principal,
    thread_id: uuid.UUID,
    data: MessageCreate,
    blobs: BlobStore,
) -> MessageOut:
    require_act(principal, "write")
    access = await thread_access(session, principal, thread_id, "message.send")
    body = _check_body(data.body)
    uploads = check_attachments(data.attachments)
    message, attachments = await _post(session, access, body, uploads, blobs)
    await _sent(session, principal, access, message, len(attachments))
    return message_out(message, await message_context(session, access, [message]))


def _author_only(access: Access, current: Message, action: str) -> None:
    if current.author_participant_id != access.me.id:
        raise Forbidden(f"only the author may {action.split('.')[1]} a message", action=action, resource_type=MESSAGE)


async def _new_version(
    session: AsyncSession,
    principal: Principal,
    access: Access,
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
    return message_out(version, await message_context(session, access, [*versions, version]))


async def edit_message(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID, data: MessageEdit
) -> MessageOut:
    """The author's new version of a message (the earlier ones stay in its history)."""
    require_act(principal, "write")
    access = await thread_access(session, principal, thread_id, "message.edit")
    versions = await message_versions(session, principal, access, message_id, "message.edit")
    _author_only(access, versions[-1], "message.edit")
    if versions[-1].deleted:
        raise Conflict("the message was deleted; it cannot be edited")
    body = _check_body(data.body)
    return await _new_version(session, principal, access, versions, body, "message.edit", "message.edited")


async def delete_message(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, message_id: uuid.UUID
) -> MessageOut:
    """The author's tombstone for a message (deleting it again answers the same tombstone)."""
    require_act(principal, "write")
    access = await thread_access(session, principal, thread_id, "message.delete")
    versions = await message_versions(session, principal, access, message_id, "message.delete")
    _author_only(access, versions[-1], "message.delete")
    if versions[-1].deleted:
        return message_out(versions[-1], await message_context(session, access, versions))
    return await _new_version(session, principal, access, versions, None, "message.delete", "message.deleted")


async def add_participant(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, user_id: uuid.UUID
) -> ThreadOut:
    """Add a staff member of the tenant to a thread the caller takes part in (staff only)."""
    principal.require("threads", "write")
    access = await thread_access(session, principal, thread_id, "thread.add_participant")
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
    return await access_out(session, access)
