"""A tenant's alert rule settings, people's notification preferences, and each notification sent or queued."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin, utcnow
from tenants.isolation import TenantOwned

NOTIFICATION_STATUSES = ("queued", "deferred", "sent", "failed", "suppressed")


class AlertSettings(IdMixin, TimestampMixin, TenantOwned, Base):
    """The tenant's choices for its alert rules (absent keys take the defaults in :mod:`core.notify.rules_config`)."""

    __tablename__ = "alert_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class NotificationPreference(IdMixin, TimestampMixin, TenantOwned, Base):
    """How one staff member (``user_id``) or one patient (``patient_id``) wants to be reached."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id"),
        UniqueConstraint("tenant_id", "patient_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint("(user_id IS NULL) <> (patient_id IS NULL)", name="one_subject"),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID | None]
    # Channels besides in-app (always on): "email", "sms".
    channels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Staff: the least severe alert that also goes out on those channels ("info" | "warning" | "critical").
    min_severity: Mapped[str] = mapped_column(String(16), default="critical")
    # Overrides of the address on file (a patient's record, a user's login email).
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    # "HH:MM" local times; quiet from start until end (across midnight when end < start). None: the tenant's.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))


class Notification(IdMixin, TenantOwned, Base):
    """One message to one person on one channel: its text as rendered for that channel, and its fate."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        # A rule that runs twice notifies once per channel.
        UniqueConstraint("tenant_id", "dedupe_key", "channel"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in NOTIFICATION_STATUSES)})", name="status"),
        CheckConstraint("(user_id IS NULL) <> (patient_id IS NULL)", name="one_recipient"),
        Index("ix_notifications_due", "status", "not_before"),
        Index("ix_notifications_recipient", "tenant_id", "patient_id", "user_id", "created_at"),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID | None]
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(50))
    urgent: Mapped[bool] = mapped_column(default=False)  # goes out in quiet hours too
    address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]  # in-app (portal) messages
