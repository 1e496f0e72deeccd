"""Threads, participants, immutable message versions, receipts and attachment metadata."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, utcnow
from tenants.isolation import TenantOwned


class Thread(IdMixin, TenantOwned, Base):
    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    subject: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sensitive label that puts the record in another consent category than its type's (see core.consent).
    data_category: Mapped[str | None] = mapped_column(String(32))


class ThreadParticipant(IdMixin, TenantOwned, Base):
    """A staff user of the tenant (``user_id``), or the patient the thread is about (``is_patient``)."""

    __tablename__ = "thread_participants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "thread_id", "user_id"),
        ForeignKeyConstraint(["tenant_id", "thread_id"], ["threads.tenant_id", "threads.id"], ondelete="CASCADE"),
        CheckConstraint("(user_id IS NULL) = is_patient", name="user_or_patient"),
    )

    thread_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    is_patient: Mapped[bool] = mapped_column(default=False)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(IdMixin, TenantOwned, Base):
    """One version of a message. Rows are never changed: an edit adds version n+1 with the same
    ``original_id``; a delete adds a tombstone version (``deleted``, no body)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "original_id", "version"),
        ForeignKeyConstraint(["tenant_id", "thread_id"], ["threads.tenant_id", "threads.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(
            ["tenant_id", "author_participant_id"], ["thread_participants.tenant_id", "thread_participants.id"]
        ),
        CheckConstraint("deleted OR body IS NOT NULL", name="body_or_tombstone"),
        Index("ix_messages_thread_sent", "thread_id", "sent_at"),
    )

    thread_id: Mapped[uuid.UUID] = mapped_column(index=True)
    original_id: Mapped[uuid.UUID] = mapped_column(index=True)
    version: Mapped[int] = mapped_column(default=1)
    author_participant_id: Mapped[uuid.UUID]
    body: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(default=False)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageAttachment(IdMixin, TenantOwned, Base):
    """Metadata of a file sent with a message; the bytes live in the blob store under ``blob_key``."""

    __tablename__ = "message_attachments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"], ondelete="CASCADE"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(200))


class MessageReceipt(IdMixin, TenantOwned, Base):
    """When a participant read a message (keyed by the message's original id: one receipt per message)."""

    __tablename__ = "message_receipts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "message_original_id", "participant_id"),
        ForeignKeyConstraint(
            ["tenant_id", "participant_id"],
            ["thread_participants.tenant_id", "thread_participants.id"],
            ondelete="CASCADE",
        ),
    )

    message_original_id: Mapped[uuid.UUID] = mapped_column(index=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    read_at: Mapped[datetime] = mapped_column(default=utcnow)
