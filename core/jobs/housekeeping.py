"""The job system's own rule: events taken into the ledger and receipts are deleted past their retention, except
an event whose work is not finished (a delivery still in the ledger, or a dead letter not replayed: a replay
needs the event's payload)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists

from core.jobs.models import DeadLetter, JobDelivery, JobReceipt
from core.outbox import OutboxEvent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event

# Published events are kept a week (to trace what happened), receipts a month (longer than any redelivery).
OUTBOX_RETENTION = timedelta(days=7)
RECEIPT_RETENTION = timedelta(days=30)


async def prune_outbox(session: AsyncSession, event: Event) -> None:
    """Delete the tenant's finished events and old receipts past their retention (hourly)."""
    at = datetime.fromisoformat(event.payload["at"])
    await session.execute(
        delete(OutboxEvent)
        .where(
            OutboxEvent.published_at.is_not(None),
            OutboxEvent.published_at < at - OUTBOX_RETENTION,
            ~exists().where(JobDelivery.event_id == OutboxEvent.id),
            ~exists().where(DeadLetter.event_id == OutboxEvent.id, DeadLetter.replay_requested_at.is_(None)),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(JobReceipt).where(JobReceipt.processed_at < at - RECEIPT_RETENTION))
