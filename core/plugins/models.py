"""What the host keeps about plugins: which network allows which, each tenant's enablement with its configuration
(secrets encrypted) and health, and the messages inbound feeds received."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin, utcnow
from tenants.isolation import TenantOwned


class PluginPolicy(Base):
    """The network admin's word on a plugin for the whole network: without a row, a plugin is allowed."""

    __tablename__ = "plugin_policies"

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True)
    plugin: Mapped[str] = mapped_column(String(40), primary_key=True)
    allowed: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(500))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PluginEnablement(IdMixin, TimestampMixin, TenantOwned, Base):
    """A plugin as one tenant uses it: on or off, its configuration, and how its calls have gone."""

    __tablename__ = "plugin_enablements"
    __table_args__ = (UniqueConstraint("tenant_id", "plugin"),)

    plugin: Mapped[str] = mapped_column(String(40))
    enabled: Mapped[bool] = mapped_column(default=True)
    # The configuration without its sensitive keys; those are in ``secrets`` (a Fernet token of their JSON).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[str | None] = mapped_column(Text)
    secret_keys: Mapped[list[Any]] = mapped_column(JSON, default=list)  # which keys are set (never their values)
    changed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The circuit breaker: failures in a row, and until when calls are not made.
    failures: Mapped[int] = mapped_column(default=0)
    open_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    health_ok: Mapped[bool | None]
    health_detail: Mapped[str | None] = mapped_column(String(500))
    health_at: Mapped[datetime | None]
    # Per pull hook, the watermark its last applied batch returned; and when the tenant's sync last ran.
    watermarks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    synced_at: Mapped[datetime | None]


class InboundMessageRecord(IdMixin, TenantOwned, Base):
    """A message an inbound feed received, kept as it came (the raw text) with what became of it."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        # A sender's control id is applied once: a repeat is answered and recorded, not applied.
        UniqueConstraint("tenant_id", "plugin", "applied_control_id"),
        Index("ix_inbound_messages_review", "tenant_id", "status", "received_at"),
    )

    plugin: Mapped[str] = mapped_column(String(40))
    content_type: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(String(100))
    control_id: Mapped[str | None] = mapped_column(String(200))
    applied_control_id: Mapped[str | None] = mapped_column(String(200))
    # received (stored, to be applied: a listener acknowledging once stored), accepted (applied), error (kept for
    # review), replayed (an error an admin replayed successfully), repeat (a received one whose control id was
    # applied meanwhile from another message)
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(String(100))
    effects: Mapped[int] = mapped_column(default=0)
    repeats: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]


class PluginPush(IdMixin, TenantOwned, Base):
    """One record (a care plan, a task) as last sent to one plugin's system: what the EHR answered (its id there,
    a URL), or the error of the last try. A retried push job skips the plugins whose row already holds the record
    as it now stands."""

    __tablename__ = "plugin_pushes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "plugin", "resource_type", "resource_id"),
        Index("ix_plugin_pushes_recent", "tenant_id", "plugin", "tried_at"),
    )

    plugin: Mapped[str] = mapped_column(String(40))
    resource_type: Mapped[str] = mapped_column(String(16))  # CarePlan or Task
    resource_id: Mapped[uuid.UUID]
    # The record as last tried: a care plan's version number, and its updated_at (what a retry compares).
    version: Mapped[int | None]
    record_updated_at: Mapped[datetime]
    external_id: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(500))
    pushed_at: Mapped[datetime | None]  # the last success
    tried_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)  # None once the record as it stands was sent
    attempts: Mapped[int] = mapped_column(default=0)  # calls for the record as it stands (1 when the first worked)
