"""A tenant's alert rule settings: stored choices over defaults, read by the rules on every run."""

from __future__ import annotations

import itertools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import InvalidInput
from core.notify.models import AlertSettings
from core.notify.schemas import AlertSettingsBody, AlertSettingsOut
from core.principal import Principal

DEFAULTS = AlertSettingsBody()


def check_timezone(value: str, field: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{value!r} is not a known IANA time zone (e.g. Europe/Paris)", field=field) from None


async def current(session: AsyncSession) -> AlertSettingsBody:
    """The tenant's settings (the defaults where it has chosen nothing)."""
    row = await session.scalar(select(AlertSettings))
    if row is None:
        return DEFAULTS
    return msgspec.convert(row.config, AlertSettingsBody)


async def read(session: AsyncSession, principal: Principal) -> AlertSettingsOut:
    principal.require("alert_settings", "read")
    row = await session.scalar(select(AlertSettings))
    body = msgspec.convert(row.config, AlertSettingsBody) if row is not None else DEFAULTS
    return AlertSettingsOut(
        **msgspec.structs.asdict(body),
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )


async def replace(session: AsyncSession, principal: Principal, body: AlertSettingsBody) -> AlertSettingsOut:
    """Replace the tenant's settings (every field; omitted ones take their defaults)."""
    principal.require("alert_settings", "write")
    check_timezone(body.timezone, "timezone")
    delays = body.overdue_escalation_minutes
    if any(b < a for a, b in itertools.pairwise(delays)):
        raise InvalidInput("each escalation comes at or after the one before", field="overdue_escalation_minutes")
    critical = body.critical_result_escalation_minutes
    if any(b <= a for a, b in itertools.pairwise(critical)):
        raise InvalidInput("each escalation comes after the one before", field="critical_result_escalation_minutes")
    row = await session.scalar(select(AlertSettings).with_for_update())
    config = msgspec.to_builtins(body)
    if row is None:
        row = AlertSettings(config=config, updated_by=principal.user_id)
        session.add(row)
    else:
        row.config = config
        row.updated_by = principal.user_id
    audit.record(
        session,
        principal.actor,
        action="alert_settings.update",
        resource_type="AlertSettings",
        resource_id=None,
        detail=config,
    )
    await session.flush()
    return await read(session, principal)
