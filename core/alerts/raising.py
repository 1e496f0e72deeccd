"""Raising an alert: into its recipient's inbox once, with copies on the channels they chose."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.alerts.models import Alert
from core.notify import delivery, messages

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def new_alert(source_event_id: uuid.UUID, user_id: uuid.UUID, **fields: Any) -> Alert:
    """An open alert for ``user_id``, keyed by what raised it (with its kind: one alert per recipient)."""
    return Alert(id=uuid.uuid4(), user_id=user_id, source_event_id=source_event_id, state="open", **fields)


async def raise_alert(session: AsyncSession, alert: Alert) -> None:
    """Put ``alert`` in its recipient's inbox (once: a rule run again finds it there) and send copies on the
    channels the recipient chose for alerts that severe."""
    exists = await session.scalar(
        select(Alert.id).where(
            Alert.user_id == alert.user_id, Alert.source_event_id == alert.source_event_id, Alert.kind == alert.kind
        )
    )
    if exists is not None:
        return
    session.add(alert)
    content = messages.staff_alert(
        facility=await delivery.facility_name(session),
        kind=alert.kind,
        severity=alert.severity,
        title=alert.title,
        body=alert.body,
    )
    await delivery.to_staff(
        session,
        alert.user_id,
        kind=alert.kind,
        severity=alert.severity,
        content=content,
        dedupe_key=f"alert/{alert.id}",
    )
