"""The messages inbound feeds received, for a tenant's admins: the ones in error with their raw text, and a replay
once the sender's data or the plugin's configuration is fixed."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, NotFound
from core.plugins import invoke
from core.plugins.effects import EFFECT_CONTENT_TYPE
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.registry import Installed, registry
from core.plugins.service import config_of, plugin_allowed
from core.principal import Principal
from core.settings import Settings
from plugin_sdk.effects import AnyEffect, InboundResult
from plugin_sdk.payloads import InboundMessage
from tenants.models import Tenant


class InboundOut(msgspec.Struct):
    id: uuid.UUID
    plugin: str
    status: str
    control_id: str | None
    summary: str | None
    error: str | None
    error_location: str | None
    effects: int
    repeats: int
    peer: str | None
    received_at: datetime
    applied_at: datetime | None
    text: str


def to_out(row: InboundMessageRecord) -> InboundOut:
    return InboundOut(
        id=row.id,
        plugin=row.plugin,
        status=row.status,
        control_id=row.control_id,
        summary=row.summary,
        error=row.error,
        error_location=row.error_location,
        effects=row.effects,
        repeats=row.repeats,
        peer=row.peer,
        received_at=row.received_at,
        applied_at=row.applied_at,
        text=row.text,
    )


async def list_messages(
    session: AsyncSession, principal: Principal, status: str | None, limit: int, offset: int
) -> list[InboundOut]:
    principal.require("plugins", "read")
    query = select(InboundMessageRecord).order_by(InboundMessageRecord.received_at.desc(), InboundMessageRecord.id)
    if status:
        query = query.where(InboundMessageRecord.status == status)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return [to_out(row) for row in rows]


async def replay(session: AsyncSession, principal: Principal, message_id: uuid.UUID, settings: Settings) -> InboundOut:
    """Read a message in error again with the plugin as it is now configured; applied once, as on arrival."""
    from core.plugins.feed import interpret  # the listener's own path, so a replay does what arrival does

    principal.require("plugins", "write")
    record = await session.scalar(select(InboundMessageRecord).where(InboundMessageRecord.id == message_id))
    if record is None:
        raise NotFound("no such inbound message", field="message_id", source="path")
    if record.status != "error":
        raise Conflict(f"only a message in error can be replayed; this one is {record.status}", field="message_id")
    plugin = registry().get(record.plugin)
    row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == record.plugin))
    if plugin is None or row is None or not row.enabled:
        raise Conflict(f"{record.plugin} is not installed and enabled for this tenant", field="message_id")
    if not await plugin_allowed(session, record.plugin):
        raise Conflict(f"the network does not allow {record.plugin}", field="message_id")
    tenant = await session.get(Tenant, principal.tenant_id)
    assert tenant is not None
    info = invoke.tenant_info(tenant)
    if record.content_type == EFFECT_CONTENT_TYPE:  # a pulled record the host refused: applied again as it is
        outcome, error = await _apply_kept(session, plugin, row, record)
    else:
        message = InboundMessage(
            id=str(record.id),
            content_type=record.content_type,
            text=record.text,
            received_at=record.received_at,
            peer=record.peer,
        )
        outcome, error = await interpret(
            session, plugin, row, config_of(settings.plugin_secret_keys, row), info, settings, record, message
        )
    audit.record(
        session,
        principal.actor,
        action="inbound.replay",
        resource_type="InboundMessage",
        resource_id=record.id,
        outcome="success" if outcome == "accepted" else "failure",
        detail={"plugin": record.plugin, "status": record.status, "error": error},
    )
    if record.status == "accepted":
        record.status = "replayed"
    return to_out(record)


async def _apply_kept(
    session: AsyncSession, plugin: Installed, row: PluginEnablement, record: InboundMessageRecord
) -> tuple[str, str | None]:
    from core.plugins.feed import apply

    try:
        effect = msgspec.json.decode(record.text.encode(), type=AnyEffect)
    except msgspec.ValidationError as exc:
        record.error = f"the kept record cannot be read: {exc}"
        return "error", record.error
    return await apply(session, plugin, row, record, InboundResult(control_id=None, effects=[effect]), isolate=True)
