"""The job ledger: what each event's handlers have still to do (deliveries), what they have done (receipts, written
with the handler's effect) and what failed for good (dead letters). The database is the ledger; the broker only
carries messages, and losing what it holds loses nothing (see core.jobs.relay)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, utcnow
from tenants.isolation import TenantOwned


class JobReceipt(IdMixin, TenantOwned, Base):
    """A handler's effect for one event is committed together with this row: a redelivered message finds it and
    does nothing (the event id is the idempotency key)."""

    __tablename__ = "job_receipts"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id", "handler"),)

    event_id: Mapped[uuid.UUID]
    handler: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobDelivery(IdMixin, TenantOwned, Base):
    """One handler's work for one event, from the relay's intake until the handler's receipt commits (the row is
    deleted in that transaction) or the job fails for good (the row becomes a dead letter).

    ``next_attempt_at`` is when the relay hands the delivery to the broker (again): at intake now; after a
    failure the retry's backoff; while an earlier event of the same aggregate is not done, a short wait. While
    handed over (``sent_at`` set), it is the delivery timeout: a message the broker lost, or whose worker died,
    is handed over again then. The retry schedule and the dead-letter rule are counted here, not in the broker.
    """

    __tablename__ = "job_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", "handler"),
        Index("ix_job_deliveries_next_attempt_at", "next_attempt_at"),
        # "An earlier event of this aggregate that the handler has not done" (see JobRuntime.deliver).
        Index("ix_job_deliveries_order", "tenant_id", "handler", "aggregate_id", "event_created_at", "event_id"),
    )

    event_id: Mapped[uuid.UUID]
    handler: Mapped[str] = mapped_column(String(100))
    # The event's, kept here so that ordering and the choice of queue need no other table.
    topic: Mapped[str] = mapped_column(String(100))
    aggregate_id: Mapped[uuid.UUID | None]
    event_created_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime]
    # When last handed to the broker; None while not in the broker's hands (new, retry or order wait due).
    sent_at: Mapped[datetime | None]
    sends: Mapped[int] = mapped_column(default=0)
    # Failed attempts: the handler raised, or a hand-over had no outcome within the delivery timeout.
    attempts: Mapped[int] = mapped_column(default=0)
    waits: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(IdMixin, TenantOwned, Base):
    """A job that failed for good (after its retries): kept for a tenant administrator to inspect and replay."""

    __tablename__ = "job_dead_letters"
    __table_args__ = (UniqueConstraint("tenant_id", "id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(100))
    handler: Mapped[str] = mapped_column(String(100))
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(default=0)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A replay is asked for through the API and carried out by the relay (which holds the broker).
    replay_requested_at: Mapped[datetime | None]
    replay_requested_by: Mapped[uuid.UUID | None]
    replayed_at: Mapped[datetime | None]
