"""An MLLP listener for one tenant: HL7 v2 messages in over TCP, each stored and applied before it is answered.

MLLP frames a message as ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D); a frame may arrive split across reads,
or several in one. Per message: the tenant's inbound plugin (``carehub_inbound_message``) says what it means, the
host stores the raw text and applies its effects in one transaction, commits, and only then answers with the
plugin's ACK (``carehub_inbound_reply``): AA once stored and applied (or a repeat of a control id already applied,
which is not applied again), AE when the message or its effects are invalid (kept for review, with the raw text),
AR when it could not even be stored (the sender must send it again). A listener killed after the ACK loses
nothing; one killed before it leaves the sender to resend, and the control id makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
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

log = logging.getLogger(__name__)
START, END = b"\x0b", b"\x1c\x0d"
CONTENT_TYPE = "application/hl7-v2"
MAX_MESSAGE_BYTES = 1 << 20


class FramingError(Exception):
    pass


class Framer:
    """Collects bytes from reads and yields whole MLLP frames' contents."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.buffer = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames: list[bytes] = []
        while True:
            start = self.buffer.find(START)
            if start < 0:
                self.buffer.clear()  # bytes outside a frame (line noise, keep-alives) are dropped
                return frames
            end = self.buffer.find(END, start + 1)
            if end < 0:
                del self.buffer[:start]
                if len(self.buffer) > self.limit:
                    self.buffer.clear()
                    raise FramingError(f"a message longer than {self.limit} bytes")
                return frames
            frames.append(bytes(self.buffer[start + 1 : end]))
            del self.buffer[: end + len(END)]


def frame(text: str) -> bytes:
    return START + text.encode("utf-8") + END


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # older senders: ISO 8859-1 (MSH-18 is often empty)


async def interpret(
    session: AsyncSession,
    plugin: Installed,
    row: PluginEnablement,
    config: dict[str, object],
    tenant: TenantInfo,
    settings: Settings,
    record: InboundMessageRecord,
    message: InboundMessage,
    *,
    isolate: bool = True,
) -> tuple[str, str | None]:
    """Have ``plugin`` read ``message`` and apply its effects in a savepoint, filling in ``record``: the outcome
    for the reply (``accepted`` or ``error``) and the error. A new ``record`` is added by the caller afterwards
    (one INSERT with its outcome), unless it is a ``repeat``. With ``isolate`` False the effects are applied
    without a savepoint, and refused ones raise :class:`EffectRejected` (``record`` filled in) for the caller to
    roll back and store the record on its own."""
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
        return "error", record.error
    if result.control_id:
        earlier = await session.scalar(
            select(InboundMessageRecord).where(
                InboundMessageRecord.plugin == plugin.name,
                InboundMessageRecord.applied_control_id == result.control_id,
                InboundMessageRecord.id != record.id,
            )
        )
        if earlier is not None:
            earlier.repeats += 1
            record.status, record.error = "repeat", None  # a repeat off the wire is answered, not stored again
            return "accepted", None
    try:
        if isolate:
            async with session.begin_nested():
                applied = await Applier(session, plugin.manifest).apply_all(result.effects)
        else:
            applied = await Applier(session, plugin.manifest).apply_all(result.effects)
    except EffectRejected as exc:
        record.status, record.error, record.error_location = "error", str(exc), None
        if not isolate:
            raise
        return "error", record.error
    record.status, record.effects, record.applied_at, record.error = "accepted", applied, utcnow(), None
    record.applied_control_id = result.control_id
    invoke.record_success(row)
    return "accepted", None


@dataclass
class Feed:
    """One tenant's listener: which plugin reads its messages, with that tenant's configuration."""

    db: async_sessionmaker[AsyncSession]
    settings: Settings
    tenant: TenantInfo
    plugin: Installed

    async def receive(self, text: str, peer: str | None) -> str:
        """Store and apply one message; the reply to send."""
        message = InboundMessage(
            id=str(uuid.uuid4()), content_type=CONTENT_TYPE, text=text, received_at=utcnow(), peer=peer
        )
        config: dict[str, object] = {}  # the reply is built with the configuration the message was read with
        with tenant_context(uuid.UUID(self.tenant.id)):
            try:
                outcome, error, config = await self._store(message)
            # The database failed, or the same control id was applied by a concurrent connection (the unique
            # applied_control_id refused this one): nothing of it is stored, and the resent message is a repeat.
            except Exception as exc:
                log.warning("inbound message not stored: %s", exc)
                outcome, error = "rejected", "the message could not be stored; send it again"
            return await self._reply(message, outcome, error, config)

    async def _config(self, session: AsyncSession) -> tuple[PluginEnablement, dict[str, object]]:
        row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == self.plugin.name))
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
                outcome, error = await interpret(
                    session, self.plugin, row, config, self.tenant, self.settings, record, message, isolate=False
                )
                if record.status != "repeat":
                    session.add(record)
                return outcome, error, config
        except EffectRejected:
            async with self.db() as session, session.begin():
                session.add(record)
            return "error", record.error, config

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


async def serve(feed: Feed, host: str, port: int, stop: asyncio.Event) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if address else None
        framer = Framer()
        try:
            while data := await reader.read(65536):
                for raw in framer.feed(data):
                    writer.write(frame(await feed.receive(decode(raw), peer)))
                    await writer.drain()
        except (FramingError, ConnectionError) as exc:
            log.warning("MLLP connection from %s closed: %s", peer, exc)
        finally:
            writer.close()

    server = await asyncio.start_server(connection, host, port)
    async with server:
        await stop.wait()
