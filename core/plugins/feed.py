"""One tenant's inbound feed: each received message read by the tenant's inbound plugin, stored with its raw text,
its effects applied, and the plugin's reply built, in one of two acknowledgement modes (per listener):

- ``applied`` (the default): the message is stored and its effects applied in one transaction, committed, and only
  then answered. AA means it is in the record; effects the host refuses (a result for a patient it does not hold)
  are answered AE and the message kept for review.
- ``stored``: the message is read (an unreadable one is still answered AE or AR and kept), stored with status
  ``received`` and its control id reserved, committed, and answered AA; a task of the listener then applies the
  stored messages in arrival order, many to a transaction. What the host refuses then is kept for review with no
  NAK (the sender already has its AA). This is what interface engines call responding after the source stage: it
  takes a busy feed at the rate of storing, and what is received is applied in batches.

In both modes nothing acknowledged is lost: a listener stopped after an ACK has either applied the message or left
it ``received``, and whichever listener of the tenant starts next applies those first. A control id already
applied (or received) is answered again and not applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.plugins import invoke
from core.plugins.effects import Applier, EffectRejected
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.registry import Installed
from core.plugins.service import config_of
from core.settings import Settings
from plugin_sdk.effects import InboundResult
from plugin_sdk.payloads import InboundMessage, TenantInfo
from tenants.context import tenant_context
from tenants.isolation import prebuilt

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/hl7-v2"
AckMode = Literal["applied", "stored"]
ACK_MODES: tuple[AckMode, ...] = ("applied", "stored")
BATCH = 50  # stored messages applied in one transaction (ack mode "stored")
LINGER_SECONDS = 0.05  # the wait for more stored messages before applying what came
RETRY_SECONDS = 2.0  # after a database failure while applying stored messages


# Statements of every message, built once (see tenants.isolation.prebuilt).
_ENABLEMENT = prebuilt(select(PluginEnablement).where(PluginEnablement.plugin == bindparam("plugin")))
_EARLIER = prebuilt(
    select(InboundMessageRecord).where(
        InboundMessageRecord.plugin == bindparam("plugin"),
        InboundMessageRecord.applied_control_id == bindparam("control_id"),
        InboundMessageRecord.id != bindparam("id"),
    )
)


async def read(
    session: AsyncSession,
    plugin: Installed,
    row: PluginEnablement,
    config: dict[str, object],
    tenant: TenantInfo,
    settings: Settings,
    record: InboundMessageRecord,
    message: InboundMessage,
) -> InboundResult | None:
    """The plugin's reading of ``message``, noted on ``record``; None when there is nothing to apply: the record
    is then in ``error`` (unreadable) or a ``repeat`` of a control id applied or received before."""
    try:
        result: InboundResult | None = await invoke.call(
            plugin, "carehub_inbound_message", tenant=tenant, config=config, settings=settings, message=message
        )
    except invoke.PluginFailed as exc:
        invoke.record_failure(row, settings, str(exc))
        result = None
        record.error = str(exc)
    if result is not None:
        record.control_id, record.summary = result.control_id, result.summary
        if result.error is not None:
            record.error, record.error_location = result.error.text, result.error.location
    if result is None or result.error is not None:
        record.status, record.error = "error", record.error or "no plugin understood the message"
        return None
    if result.control_id:
        earlier = await session.scalar(
            _EARLIER, {"plugin": plugin.name, "control_id": result.control_id, "id": record.id}
        )
        if earlier is not None:
            earlier.repeats += 1
            record.status, record.error = "repeat", None  # a repeat off the wire is answered, not stored again
            return None
    return result


async def apply(
    session: AsyncSession,
    plugin: Installed,
    row: PluginEnablement,
    record: InboundMessageRecord,
    result: InboundResult,
    *,
    isolate: bool,
    applier: Applier | None = None,
) -> tuple[str, str | None]:
    """Apply ``result``'s effects and mark ``record`` accepted: ``("accepted", None)``, or ``("error", why)`` for
    refused effects. With ``isolate`` they are applied in a savepoint; without, refused effects raise
    :class:`EffectRejected` (``record`` filled in) for the caller to roll back and keep the record on its own.
    ``applier``: one shared by the messages of a transaction (without ``isolate``; it does not flush)."""
    try:
        if isolate:
            async with session.begin_nested():
                applied = await Applier(session, plugin.manifest).apply_all(result.effects)
        elif applier is not None:
            before = applier.applied
            applied = await applier.apply_all(result.effects, flush=False) - before
        else:
            applied = await Applier(session, plugin.manifest).apply_all(result.effects)
    except EffectRejected as exc:
        record.status, record.error, record.error_location = "error", str(exc), None
        record.applied_control_id = None  # a corrected resend may be applied
        if not isolate:
            raise
        return "error", record.error
    record.status, record.effects, record.applied_at, record.error = "accepted", applied, utcnow(), None
    record.applied_control_id = result.control_id
    invoke.record_success(row)
    return "accepted", None


async def interpret(
    session: AsyncSession,
    plugin: Installed,
    row: PluginEnablement,
    config: dict[str, object],
    tenant: TenantInfo,
    settings: Settings,
    record: InboundMessageRecord,
    message: InboundMessage,
) -> tuple[str, str | None]:
    """Read and apply in one go, the effects in a savepoint (an admin's replay): the outcome and the error."""
    result = await read(session, plugin, row, config, tenant, settings, record, message)
    if result is None:
        return ("accepted", None) if record.status == "repeat" else ("error", record.error)
    return await apply(session, plugin, row, record, result, isolate=True)


def _message(record: InboundMessageRecord) -> InboundMessage:
    return InboundMessage(
        id=str(record.id),
        content_type=record.content_type,
        text=record.text,
        received_at=record.received_at,
        peer=record.peer,
    )


@dataclass
class Feed:
    """One tenant's listener: which plugin reads its messages, with that tenant's configuration, and when it
    answers (see the module's docstring)."""

    db: async_sessionmaker[AsyncSession]
    settings: Settings
    tenant: TenantInfo
    plugin: Installed
    ack: AckMode = "applied"
    _queue: asyncio.Queue[uuid.UUID] = field(default_factory=asyncio.Queue, init=False, repr=False)
    _readings: dict[uuid.UUID, InboundResult] = field(default_factory=dict, init=False, repr=False)

    @property
    def tenant_id(self) -> uuid.UUID:
        return uuid.UUID(self.tenant.id)

    async def receive(self, text: str, peer: str | None) -> str:
        """Store (and in ``applied`` mode apply) one message; the reply to send."""
        message = InboundMessage(
            id=str(uuid.uuid4()), content_type=CONTENT_TYPE, text=text, received_at=utcnow(), peer=peer
        )
        config: dict[str, object] = {}  # the reply is built with the configuration the message was read with
        with tenant_context(self.tenant_id):
            try:
                outcome, error, config = await self._store(message)
            # The database failed, or the same control id was applied by a concurrent connection (the unique
            # applied_control_id refused this one): nothing of it is stored, and the resent message is a repeat.
            except Exception as exc:
                log.warning("inbound message not stored: %s", exc)
                outcome, error = "rejected", "the message could not be stored; send it again"
            return await self._reply(message, outcome, error, config)

    async def _config(self, session: AsyncSession) -> tuple[PluginEnablement, dict[str, object]]:
        row = await session.scalar(_ENABLEMENT, {"plugin": self.plugin.name})
        if row is None or not row.enabled:
            raise LookupError(f"{self.plugin.name} is not enabled for {self.tenant.slug}")
        return row, config_of(self.settings.plugin_secret_keys, row)

    async def _store(self, message: InboundMessage) -> tuple[str, str | None, dict[str, object]]:
        record = InboundMessageRecord(
            id=uuid.UUID(message.id),
            plugin=self.plugin.name,
            content_type=message.content_type,
            text=message.text,
            peer=message.peer,
            received_at=message.received_at,
            status="error",
        )
        config: dict[str, object] = {}
        # No savepoint around the effects (it cost three statements a message): a refused batch rolls the whole
        # transaction back, and the message is then kept, in error, in one of its own.
        try:
            async with self.db() as session, session.begin():
                row, config = await self._config(session)
                result = await read(session, self.plugin, row, config, self.tenant, self.settings, record, message)
                if result is None:
                    if record.status == "repeat":
                        return "accepted", None, config
                    session.add(record)
                    return "error", record.error, config
                if self.ack == "stored":
                    record.status, record.applied_control_id = "received", result.control_id
                    session.add(record)
                    self._readings[record.id] = result
                    outcome, error = "accepted", None
                else:
                    outcome, error = await apply(session, self.plugin, row, record, result, isolate=False)
                    session.add(record)
        except EffectRejected:
            async with self.db() as session, session.begin():
                session.add(record)
            return "error", record.error, config
        except BaseException:
            self._readings.pop(record.id, None)
            raise
        if self.ack == "stored":
            self._queue.put_nowait(record.id)
        return outcome, error, config

    async def _reply(self, message: InboundMessage, outcome: str, error: str | None, config: dict[str, object]) -> str:
        try:
            reply = await invoke.call(
                self.plugin,
                "carehub_inbound_reply",
                tenant=self.tenant,
                config=config,
                settings=self.settings,
                message=message,
                outcome=outcome,
                error=error,
            )
        except invoke.PluginFailed as exc:
            log.warning("no reply from %s: %s", self.plugin.name, exc)
            reply = None
        return reply or "MSA|AR||carehub could not build an acknowledgement\r"

    # -- applying stored messages -------------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Apply the messages of this tenant and plugin stored but not yet applied (a listener stopped before it
        applied them), oldest first; how many were taken."""
        with tenant_context(self.tenant_id):
            async with self.db() as session:
                waiting = list(
                    await session.scalars(
                        select(InboundMessageRecord.id)
                        .where(
                            InboundMessageRecord.plugin == self.plugin.name, InboundMessageRecord.status == "received"
                        )
                        .order_by(InboundMessageRecord.received_at, InboundMessageRecord.id)
                    )
                )
        for start in range(0, len(waiting), BATCH):
            await self.apply_stored(waiting[start : start + BATCH])
        return len(waiting)

    async def run(self) -> None:
        """Apply stored messages as they arrive, up to :data:`BATCH` to a transaction (until cancelled)."""
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < BATCH:
                await asyncio.sleep(LINGER_SECONDS)  # let a busy feed's next messages join this transaction
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.apply_stored(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every message stored so far is applied (or kept in error)."""
        await self._queue.join()

    async def apply_stored(self, ids: list[uuid.UUID]) -> None:
        """Apply these stored messages in one transaction, in arrival order; when one is refused the others are
        applied one by one, and the refused one is kept in error. A database failure is retried."""
        for attempt in range(5):
            try:
                if await self._apply_together(ids):
                    return
                for one in ids:
                    await self._apply_together([one], alone=True)
                return
            except Exception as exc:  # the database: the messages stay received, taken again
                log.warning("stored messages not applied yet (%s); retrying", exc)
                await asyncio.sleep(RETRY_SECONDS * (attempt + 1))
        log.error("stored messages left received after five attempts; the next listener start applies them")

    async def _apply_together(self, ids: list[uuid.UUID], *, alone: bool = False) -> bool:
        """True when all were applied (or were no longer waiting); False when one was refused (nothing applied)."""
        refused: tuple[uuid.UUID, str] | None = None
        with tenant_context(self.tenant_id):
            try:
                async with self.db() as session, session.begin():
                    row, config = await self._config(session)
                    records = await session.scalars(
                        select(InboundMessageRecord)
                        .where(InboundMessageRecord.id.in_(ids), InboundMessageRecord.status == "received")
                        .order_by(InboundMessageRecord.received_at, InboundMessageRecord.id)
                        .with_for_update(skip_locked=True)  # another listener of the tenant may be on them
                    )
                    waiting = records.all()
                    applier = Applier(session, self.plugin.manifest)
                    known = [self._readings[r.id] for r in waiting if r.id in self._readings]
                    await applier.prefetch([effect for result in known for effect in result.effects])
                    for record in waiting:
                        result = self._readings.get(record.id) or await self._read_again(session, row, config, record)
                        if result is None:
                            continue
                        try:
                            await apply(session, self.plugin, row, record, result, isolate=False, applier=applier)
                        except EffectRejected as exc:
                            refused = (record.id, str(exc))
                            raise
            except EffectRejected:
                if not alone or refused is None:
                    return False
                await self._keep_refused(*refused)
        for one in ids:
            self._readings.pop(one, None)
        return True

    async def _read_again(
        self, session: AsyncSession, row: PluginEnablement, config: dict[str, object], record: InboundMessageRecord
    ) -> InboundResult | None:
        """A stored message's reading after a restart (the plugin reads it again, as it is configured now)."""
        record.applied_control_id = None  # its own reservation is not a repeat of itself
        await session.flush()
        result = await read(session, self.plugin, row, config, self.tenant, self.settings, record, _message(record))
        if result is not None:
            record.applied_control_id = result.control_id
        return result

    async def _keep_refused(self, record_id: uuid.UUID, error: str) -> None:
        with tenant_context(self.tenant_id):
            async with self.db() as session, session.begin():
                stored = await session.get(InboundMessageRecord, record_id)
                if stored is not None and stored.status == "received":
                    stored.status, stored.error, stored.applied_control_id = "error", error, None
