"""An MLLP listener for one tenant: HL7 v2 messages in over TCP, each stored (and applied) before it is answered.

MLLP frames a message as ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D); a frame may arrive split across reads,
or several in one. Each message goes to the tenant's :class:`core.plugins.feed.Feed`, which has the inbound plugin
(``carehub_inbound_message``) read it, stores the raw text and applies its effects, commits, and answers with the
plugin's ACK (``carehub_inbound_reply``): AA once stored and applied (or, with ``--ack stored``, once stored; see
:mod:`core.plugins.feed`), or a repeat of a control id already taken, which is not applied again; AE when the
message or its effects are invalid (kept for review, with the raw text); AR when it could not even be stored (the
sender must send it again). A listener killed after the ACK loses nothing; one killed before it leaves the sender
to resend, and the control id makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.plugins.feed import CONTENT_TYPE, Feed

log = logging.getLogger(__name__)
START, END = b"\x0b", b"\x1c\x0d"
__all__ = ["CONTENT_TYPE", "END", "START", "Feed", "Framer", "FramingError", "decode", "frame", "serve"]
MAX_MESSAGE_BYTES = 1 << 20
DRAIN_SECONDS = 60.0


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

    await feed.catch_up()  # what an earlier listener stored and did not apply comes first
    applier = asyncio.create_task(feed.run()) if feed.ack == "stored" else None
    server = await asyncio.start_server(connection, host, port)
    try:
        async with server:
            await stop.wait()
        if applier is not None:  # everything acknowledged is applied before the listener goes, unless the
            try:  # database stays away: then it waits, received, for the next listener of the tenant
                await asyncio.wait_for(feed.drain(), DRAIN_SECONDS)
            except TimeoutError:
                log.warning("stopping with stored messages not applied; the next listener applies them")
    finally:
        if applier is not None:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier
