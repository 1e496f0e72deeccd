"""The dead-letter list of a tenant: jobs that failed after every retry, to inspect and replay."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.errors import Conflict
from core.jobs.models import DeadLetter, JobDelivery
from core.jobs.schemas import DeadLetterOut
from core.principal import Principal
from core.records import get_or_404

RESOURCE = "DeadLetter"


def to_out(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        event_id=letter.event_id,
        topic=letter.topic,
        handler=letter.handler,
        payload=dict(letter.message.get("payload") or {}),
        error=letter.error,
        retries=letter.retries,
        failed_at=letter.failed_at,
        replay_requested_at=letter.replay_requested_at,
        replayed_at=letter.replayed_at,
    )


async def list_dead_letters(
    session: AsyncSession, principal: Principal, *, pending_only: bool = False, limit: int = 50, offset: int = 0
) -> list[DeadLetterOut]:
    """The tenant's dead letters, newest first; ``pending_only``: those not replayed (nor asked to be)."""
    principal.require("jobs", "read")
    query = select(DeadLetter)
    if pending_only:
        query = query.where(DeadLetter.replay_requested_at.is_(None))
    rows = await session.scalars(query.order_by(DeadLetter.failed_at.desc(), DeadLetter.id).limit(limit).offset(offset))
    audit.record(session, principal.actor, action="jobs.dead_letters.read", resource_type=RESOURCE)
    return [to_out(r) for r in rows.all()]


async def read_dead_letter(session: AsyncSession, principal: Principal, letter_id: uuid.UUID) -> DeadLetterOut:
    principal.require("jobs", "read")
    letter = await get_or_404(
        session,
        principal,
        DeadLetter,
        letter_id,
        action="jobs.dead_letter.read",
        resource_type=RESOURCE,
        detail="dead letter not found",
    )
    return to_out(letter)


async def replay(session: AsyncSession, principal: Principal, letter_id: uuid.UUID) -> DeadLetterOut:
    """Put the job back in the ledger, due now with its retries anew (the relay hands it over with its original
    event id, so a handler that has meanwhile succeeded does nothing twice). A letter is replayed once; a new
    failure makes a new letter."""
    principal.require("jobs", "replay")
    letter = await get_or_404(
        session,
        principal,
        DeadLetter,
        letter_id,
        action="jobs.dead_letter.replay",
        resource_type=RESOURCE,
        detail="dead letter not found",
        for_update=True,
    )
    if letter.replay_requested_at is not None:
        raise Conflict("a replay of this dead letter was already asked for", field="dead_letter_id", source="path")
    now = utcnow()
    letter.replay_requested_at = now
    letter.replay_requested_by = principal.user_id
    message = letter.message
    pending = await session.scalar(
        select(JobDelivery.id).where(JobDelivery.event_id == letter.event_id, JobDelivery.handler == letter.handler)
    )
    if pending is None:  # (a delivery of the same job may be in the ledger again already: it is the replay)
        created = message.get("created_at")
        session.add(
            JobDelivery(
                event_id=letter.event_id,
                handler=letter.handler,
                topic=letter.topic,
                aggregate_id=uuid.UUID(message["aggregate_id"]) if message.get("aggregate_id") else None,
                event_created_at=datetime.fromisoformat(created) if created else letter.failed_at,
                next_attempt_at=now,
            )
        )
    letter.replayed_at = now
    audit.record(
        session,
        principal.actor,
        action="jobs.dead_letter.replay",
        resource_type=RESOURCE,
        resource_id=letter.id,
        detail={"topic": letter.topic, "handler": letter.handler, "event_id": str(letter.event_id)},
    )
    await session.flush()
    return to_out(letter)
