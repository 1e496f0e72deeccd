"""The email channel: one message, one SMTP conversation, in a worker thread.

smtplib blocks, so each delivery runs in :func:`asyncio.to_thread` with the timeout on the socket: connecting,
the TLS handshake and every reply from the server each wait at most ``timeout_seconds``, and the conversation is
cut off once ``timeout_seconds`` have passed since connecting began.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import smtplib
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from plugin_sdk import Channel, ChannelError, OutboundMessage
from plugins.email_smtp.config import SmtpSettings, env_name, parse_address

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class EmailChannel(Channel):
    name = "email"
    address_kind = "email"
    max_detail = "logistics"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.timeout_seconds = settings.timeout_seconds

    async def send(self, message: OutboundMessage) -> str | None:
        """Deliver ``message``; return its Message-ID, which is the same on every retry of one notification."""
        email = self.compose(message)
        try:
            await asyncio.to_thread(self._deliver, email)
        except OSError as exc:  # smtplib's errors, refused connections, timeouts and TLS errors are all OSErrors
            raise _failure(exc) from exc
        return str(email["Message-ID"])

    def compose(self, message: OutboundMessage) -> EmailMessage:
        """The email for ``message``: plain text, marked as automatic so that mail servers do not auto-reply.

        Raises:
            ChannelError: (permanent) ``message.to`` is not one plain email address.
        """
        recipient = parse_address(message.to)
        if recipient is None:
            raise ChannelError("not a valid email address", permanent=True)
        sender = Address(display_name=_one_line(message.sender_name), addr_spec=self.settings.sender)
        email = EmailMessage()
        email["From"] = sender
        email["To"] = recipient
        email["Subject"] = _one_line(message.subject)
        email["Date"] = format_datetime(datetime.now(UTC))
        email["Message-ID"] = message_id(message.id, sender.domain)
        # RFC 3834: automatic mail; Exchange's equivalent stops out-of-office replies to a no-reply sender.
        email["Auto-Submitted"] = "auto-generated"
        email["X-Auto-Response-Suppress"] = "All"
        email.set_content(message.text)
        return email

    def _deliver(self, email: EmailMessage) -> None:
        settings = self.settings
        deadline = time.monotonic() + settings.timeout_seconds
        context = ssl.create_default_context()
        client: smtplib.SMTP
        # Connecting and the greeting: each bounded by the socket timeout.
        if settings.security == "ssl":
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_seconds, context=context)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
        hung_up = threading.Event()
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _hang_up, (client, hung_up))
        watchdog.daemon = True
        watchdog.start()
        try:
            if settings.security == "starttls":
                client.starttls(context=context)
            if settings.username and settings.password:
                client.login(settings.username, settings.password)
            client.send_message(email, from_addr=settings.sender)
        except BaseException as exc:
            watchdog.cancel()
            client.close()
            if hung_up.is_set() and isinstance(exc, OSError):
                raise TimeoutError(f"the SMTP conversation took longer than {settings.timeout_seconds:g} s") from exc
            raise
        # The message is accepted: a failed (or cut off) goodbye must not turn into a failure that would send it
        # again.
        try:
            client.quit()
        except OSError:
            client.close()
        finally:
            watchdog.cancel()


def _hang_up(client: smtplib.SMTP, hung_up: threading.Event) -> None:
    """End a conversation that has outlived its deadline. The socket timeout bounds each reply, not their sum,
    and carehub gives up waiting soon after ``timeout_seconds``: a conversation that went on in this thread could
    still deliver a message that carehub has already counted as failed and will send again."""
    hung_up.set()
    sock = client.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            # The plain socket's shutdown (not SSLSocket's): it wakes the thread blocked reading from this socket.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID derived from carehub's notification id, so that a retried delivery is recognisably the same
    email (mail clients and archives drop duplicates by Message-ID)."""
    local = notification_id if _SAFE_ID.fullmatch(notification_id) else _digest(notification_id)
    return f"<{local}@{domain}>"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _one_line(value: str) -> str:
    """Header text without line breaks (a line break in a header value would end the header)."""
    return " ".join(value.split())


def _failure(exc: OSError) -> ChannelError:
    """What a failed SMTP conversation means for retrying: the server's 5xx replies are final, 4xx are not; a
    connection that failed or timed out may work next time."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (-1, b""))
        return _reply_error("recipient refused", code, reply)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _reply_error(
            f"login refused (check {env_name('smtp_username')} and {env_name('smtp_password')})",
            exc.smtp_code,
            exc.smtp_error,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error(type(exc).__name__, exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # The server does not offer STARTTLS or AUTH: no retry can change that, only the operator's settings.
        return ChannelError(
            f"SMTP server: {exc} (check {env_name('smtp_security')} and {env_name('smtp_username')})", permanent=True
        )
    return ChannelError(f"SMTP connection failed: {type(exc).__name__}: {exc}", permanent=False)


def _reply_error(what: str, code: int, reply: bytes | str) -> ChannelError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return ChannelError(f"SMTP {what}: {code} {text}".strip(), permanent=500 <= code < 600)
