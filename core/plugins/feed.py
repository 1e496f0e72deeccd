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
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.plugins import invoke
from core.plugins.effects import Applier, EffectRejected
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.outcomes import database_refusal
from core.plugins.registry import Installed
from core.plugins.service import config_of, plugin_allowed
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
POLICY_SECONDS = 5.0  # how long a listener trusts the network's allowing the plugin before reading it again
LINGER_SECONDS = 0.05  # the wait for more stored messages before applying what came
RETRY_SECONDS = 2.0  # after a database failure while applying stored messages


# One applier of a tenant's plugin at a time, whichever listener: a row lock on PostgreSQL, the write lock on
# SQLite (a no-op UPDATE, taken before anything is read; updated_at set to itself, so its onupdate stays out).
_APPLIER_LOCK = (
    update(PluginEnablement)
    .where(PluginEnablement.plugin == bindparam("plugin"), PluginEnablement.tenant_id == bindparam("tenant"))
    .values(plugin=PluginEnablement.plugin, updated_at=PluginEnablement.updated_at)
    .execution_options(synchronize_session=False)
)
_OLDEST_RECEIVED = prebuilt(
    select(InboundMessageRecord)
    .where(InboundMessageRecord.plugin == bindparam("plugin"), InboundMessageRecord.status == "received")
    .order_by(InboundMessageRecord.received_at, InboundMessageRecord.id)
    .limit(bindparam("n"))
)
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
    record.status, record.effects, record.applied_at = "accepted", applied, utcnow()
    record.error = record.error_location = None
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


def fallback_ack(text: str) -> str:
    """The AR the host sends when the plugin built no reply: a plain HL7 v2 ACK (MSH and MSA) answering the
    message's own MSH as far as it can be read, so that the sender's engine can still match it and resend."""
    first = text.replace("\n", "\r").split("\r", 1)[0]
    fields = first.split(first[3]) if first.startswith("MSH") and len(first) > 3 else []

    def field(n: int) -> str:  # MSH-n, the sender's delimiters and line breaks taken out
        value = fields[n - 1] if 0 < n <= len(fields) else ""
        return "".join(c for c in value.split(first[4:5] or "^")[0] if c not in "|^~\\&\r\n")[:50]

    stamp = utcnow().strftime("%Y%m%d%H%M%S%z")
    return (
        f"MSH|^~\\&|CAREHUB||{field(3)}|{field(4)}|{stamp}||ACK|CH{uuid.uuid4().hex[:18].upper()}|P|"
        f"{field(12) or '2.5.1'}\rMSA|AR|{field(10)}|carehub could not build an acknowledgement; send it again\r"
    )


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
    _allowed_until: float = field(default=0.0, init=False, repr=False)

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
        now = time.monotonic()
        if now >= self._allowed_until:  # the network admin's word, read again every few seconds
            if not await plugin_allowed(session, self.plugin.name):
                raise LookupError(f"the network does not allow {self.plugin.name}")
            self._allowed_until = now + POLICY_SECONDS
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
        except DBAPIError as exc:  # the record would not take it: kept in error, not resent
            self._readings.pop(record.id, None)
            reason = database_refusal(exc)
            if reason is None:
                raise  # the database itself: answered AR, the sender sends it again
            outcome, error = await self._keep_unstorable(record, reason)
            return outcome, error, config
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
        return reply or fallback_ack(message.text)

    async def _keep_unstorable(self, record: InboundMessageRecord, reason: str) -> tuple[str, str | None]:
        """A message whose transaction the database refused (a value too long for its column, an identifier named
        twice, the same control id applied by another connection at the same moment): a repeat when its control
        id is now applied, else kept in error with the database's reason (sending it again would fail again)."""
        async with self.db() as session, session.begin():
            if record.control_id:
                earlier = await session.scalar(
                    _EARLIER, {"plugin": self.plugin.name, "control_id": record.control_id, "id": record.id}
                )
                if earlier is not None:
                    earlier.repeats += 1
                    return "accepted", None
            kept = InboundMessageRecord(
                id=record.id,
                plugin=record.plugin,
                content_type=record.content_type,
                text=record.text,
                peer=record.peer,
                received_at=record.received_at,
                status="error",
                control_id=(record.control_id or "")[:200] or None,
                summary=(record.summary or "")[:300] or None,
                error=reason,
            )
            session.add(kept)
            return "error", kept.error

    # -- applying stored messages -------------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Apply what this tenant's listeners of the plugin stored and did not apply (one stopped before it
        did), oldest first; how many were taken."""
        return await self.apply_pending()

    async def run(self) -> None:
        """Apply stored messages as they arrive, up to :data:`BATCH` to a transaction (until cancelled)."""
        while True:
            await self._queue.get()
            if self._queue.qsize() < BATCH:
                await asyncio.sleep(LINGER_SECONDS)  # let a busy feed's next messages join this transaction
            taken = 1
            while not self._queue.empty():
                self._queue.get_nowait()
                taken += 1
            try:
                await self.apply_pending()
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every message this listener stored so far is applied (or kept in error)."""
        await self._queue.join()

    async def apply_pending(self) -> int:
        """Apply every message of the tenant and plugin stored and not yet applied, whichever listener stored it,
        oldest first, :data:`BATCH` to a transaction; how many were taken. While the database fails the messages
        stay received and are tried again, in order (nothing younger is applied before them)."""
        taken, failures = 0, 0
        while True:
            try:
                done = await self._apply_batch()
            except LookupError as exc:  # the plugin is off for the tenant: what is stored waits until it is on
                log.warning("stored messages left received: %s", exc)
                return taken
            except Exception as exc:
                failures += 1
                log.warning("stored messages not applied yet (%s); trying again", str(exc).splitlines()[0][:200])
                await asyncio.sleep(min(RETRY_SECONDS * failures, 30.0))
                continue
            failures = 0
            taken += done
            if done < BATCH:
                return taken

    async def _apply_batch(self) -> int:
        """The oldest :data:`BATCH` received messages in one transaction; when one is refused (its effects, or a
        value the database will not take), one by one instead, each refused one kept in error."""
        try:
            return await self._apply_oldest(BATCH)
        except _Refused:
            pass
        taken = 0
        while taken < BATCH:
            try:
                done = await self._apply_oldest(1)
            except _Refused as refused:
                await self._keep_refused(refused.record_id, refused.error)
                done = 1
            if not done:
                break
            taken += done
        return taken

    async def _apply_oldest(self, limit: int) -> int:
        """Apply up to ``limit`` of the oldest received messages in one transaction, holding the tenant's applier
        lock for the plugin (one listener at a time applies, so arrival order holds across listeners); how many.
        Raises :class:`_Refused` when one is refused, having applied none."""
        current: uuid.UUID | None = None
        taken: list[uuid.UUID] = []
        with tenant_context(self.tenant_id):
            try:
                async with self.db() as session, session.begin():
                    row, config = await self._config(session)
                    await session.execute(_APPLIER_LOCK, {"plugin": self.plugin.name, "tenant": self.tenant_id})
                    waiting = (await session.scalars(_OLDEST_RECEIVED, {"plugin": self.plugin.name, "n": limit})).all()
                    applier = Applier(session, self.plugin.manifest)
                    known = [self._readings[r.id] for r in waiting if r.id in self._readings]
                    await applier.prefetch([effect for result in known for effect in result.effects])
                    for record in waiting:
                        current = record.id
                        taken.append(record.id)
                        result = self._readings.get(record.id) or await self._read_again(session, row, config, record)
                        if result is not None:
                            await apply(session, self.plugin, row, record, result, isolate=False, applier=applier)
                    current = None
                    await session.flush()
            except EffectRejected as exc:
                assert current is not None
                raise _Refused(current, str(exc)) from None
            except DBAPIError as exc:
                reason = database_refusal(exc)
                if reason is None:
                    raise  # the database itself: the messages stay received, tried again
                raise _Refused(taken[0] if len(taken) == 1 else None, reason) from None
        for one in taken:
            self._readings.pop(one, None)
        return len(taken)

    async def _read_again(
        self, session: AsyncSession, row: PluginEnablement, config: dict[str, object], record: InboundMessageRecord
    ) -> InboundResult | None:
        """A stored message's reading after a restart, or one another listener stored (read again, with the
        plugin as it is configured now)."""
        result = await read(session, self.plugin, row, config, self.tenant, self.settings, record, _message(record))
        if result is None:
            record.applied_control_id = None  # in error now: its control id is free for a corrected resend
        return result

    async def _keep_refused(self, record_id: uuid.UUID | None, error: str) -> None:
        if record_id is None:
            return
        with tenant_context(self.tenant_id):
            async with self.db() as session, session.begin():
                stored = await session.get(InboundMessageRecord, record_id)
                if stored is not None and stored.status == "received":
                    stored.status, stored.error, stored.applied_control_id = "error", error[:2000], None
        self._readings.pop(record_id, None)


class _Refused(Exception):
    """A stored message whose effects or values were refused: ``record_id`` (None when the batch's commit failed
    and the message is not known), and why."""

    def __init__(self, record_id: uuid.UUID | None, error: str) -> None:
        super().__init__(error)
        self.record_id, self.error = record_id, error
