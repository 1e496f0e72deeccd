"""The audit log: who did what to which record, with what outcome. Append-only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, Index, String, UniqueConstraint, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, IdMixin, utcnow
from core.errors import InvalidInput
from tenants.isolation import TenantOwned, append

if TYPE_CHECKING:
    from core.principal import Principal

OUTCOMES = ("success", "denied", "not_found", "failure")


class AuditEvent(IdMixin, TenantOwned, Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'not_found', 'failure')", name="outcome"),
        Index("ix_audit_events_tenant_at", "tenant_id", "at"),
        UniqueConstraint("tenant_id", "id"),
    )

    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    actor_roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AuditLogIsAppendOnly(RuntimeError):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise AuditLogIsAppendOnly("audit events cannot be changed or deleted")


@dataclass(frozen=True)
class Actor:
    """Who acts: a user with roles in the current tenant, or the system (user_id None)."""

    user_id: uuid.UUID | None
    roles: tuple[str, ...] = ()


SYSTEM = Actor(user_id=None, roles=("system",))


def record(
    session: AsyncSession,
    actor: Actor,
    *,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    patient_id: uuid.UUID | None = None,
    outcome: str = "success",
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> None:
    """Append an audit event to the session's transaction (it commits or rolls back with the change).

    The event belongs to ``tenant_id`` if given (only inside a network scope may it differ from the current
    tenant), else to the current tenant. It is written as a plain row with the transaction's other events in one
    INSERT (:func:`tenants.isolation.append`), without the unit of work, which costs more than the rest of a read.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    row = {
        "at": utcnow(),
        "actor_user_id": actor.user_id,
        "actor_roles": list(actor.roles),
        "patient_id": patient_id,
        "action": action,
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else None,
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "id": uuid.uuid4(),
    }
    append(session, AuditEvent, row, tenant_id=tenant_id)


FAILURES_KEY = "carehub.audit_after_rollback"


def record_failure(session: AsyncSession, actor: Actor, **fields: Any) -> None:
    """Note an audit event for an access that fails (e.g. not found).

    The request's transaction is rolled back on the failure, so the event is kept aside and written by
    :func:`flush_failures` in a fresh transaction after the rollback.
    """
    session.info.setdefault(FAILURES_KEY, []).append((actor, fields))


async def flush_failures(session: AsyncSession) -> None:
    """Write the failure events noted on ``session`` (call after its rollback)."""
    pending = session.info.pop(FAILURES_KEY, [])
    if not pending:
        return
    for actor, fields in pending:
        record(session, actor, **fields)
    await session.commit()


async def list_events(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    patient_id: uuid.UUID | None = None,
    actor_user_id: uuid.UUID | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEvent]:
    """The current tenant's audit events, newest first (for tenant administrators); times need a time zone."""
    principal.require("audit", "read")
    for name, value in (("since", since), ("until", until)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise InvalidInput(f"{name} needs a timezone (e.g. 2026-11-24T08:00:00Z)", field=name, source="query")
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(f"{name} is out of range", field=name, source="query") from None
    query = select(AuditEvent)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    if actor_user_id is not None:
        query = query.where(AuditEvent.actor_user_id == actor_user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id).limit(limit).offset(offset)
    return list((await session.scalars(query)).all())
