"""The bundled notification channels against real local servers: an SMTP server (aiosmtpd) for email and a
small HTTP server speaking the documented gateway protocol for SMS. Every channel is obtained the way carehub
obtains it, through the plugin manager from the operator's settings."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from core.plugins import PluginError, channels
from plugin_sdk import PROJECT, Channel, ChannelError, HookSpecs, OutboundMessage

SENDER = "noreply@carehub.example.org"
PATIENT_EMAIL = "pat.doe@example.org"
PATIENT_PHONE = "+15551234567"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notification(**overrides: str) -> OutboundMessage:
    values = {
        "id": "ntf-7f3a9c",
        "channel": "email",
        "to": PATIENT_EMAIL,
        "subject": "Appointment reminder",
        "text": "You have an appointment on 3 March at 10:00 at Riverside Clinic, 12 Main Street.",
        "sender_name": "Riverside Clinic",
    }
    values.update(overrides)
    return OutboundMessage(**values)


def only(found: dict[str, Channel], name: str) -> Channel:
    assert set(found) == {name}
    return found[name]


# ---------------------------------------------------------------------------------------------------------------
# Registration: what an operator's settings turn into


def test_no_settings_no_channels() -> None:
    assert channels({}) == {}
    assert channels({"smtp_host": "", "sms_gateway_url": "  "}) == {}


def test_both_bundled_channels_from_settings() -> None:
    found = channels(
        {
            "smtp_host": "mail.example.org",
            "smtp_from": SENDER,
            "sms_gateway_url": "https://sms.example.org/v1/messages",
            "sms_gateway_token": "secret-token",
            "sms_from": "Riverside",
        }
    )
    assert set(found) == {"email", "sms"}
    assert (found["email"].address_kind, found["email"].max_detail) == ("email", "logistics")
    assert (found["sms"].address_kind, found["sms"].max_detail) == ("phone", "logistics")
    assert found["email"].timeout_seconds == found["sms"].timeout_seconds == 10


def test_smtp_default_port_follows_security() -> None:
    def port(**extra: str) -> int:
        channel = only(channels({"smtp_host": "mail.example.org", "smtp_from": SENDER, **extra}), "email")
        return int(channel.settings.port)  # type: ignore[attr-defined]

    assert port() == 587
    assert port(smtp_security="ssl") == 465
    assert port(smtp_security="ssl", smtp_port="2465") == 2465


SMTP_ON = {"smtp_host": "mail.example.org", "smtp_from": SENDER}
SMS_ON = {"sms_gateway_url": "https://sms.example.org/send", "sms_gateway_token": "t", "sms_from": "Riverside"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"smtp_host": "mail.example.org"}, "CAREHUB_CHANNEL_SMTP_FROM"),
        ({**SMTP_ON, "smtp_from": "Carehub <a@b.org>"}, "CAREHUB_CHANNEL_SMTP_FROM"),
        ({**SMTP_ON, "smtp_port": "smtp"}, "CAREHUB_CHANNEL_SMTP_PORT"),
        ({**SMTP_ON, "smtp_port": "70000"}, "CAREHUB_CHANNEL_SMTP_PORT"),
        ({**SMTP_ON, "smtp_security": "tls"}, "CAREHUB_CHANNEL_SMTP_SECURITY"),
        ({**SMTP_ON, "smtp_username": "carehub"}, "CAREHUB_CHANNEL_SMTP_PASSWORD"),
        ({**SMTP_ON, "smtp_security": "none", "smtp_username": "u", "smtp_password": "p"}, "SMTP_SECURITY"),
        ({**SMTP_ON, "smtp_timeout_seconds": "-1"}, "CAREHUB_CHANNEL_SMTP_TIMEOUT_SECONDS"),
        ({**SMS_ON, "sms_gateway_url": "http://sms.example.org/send"}, "CAREHUB_CHANNEL_SMS_GATEWAY_URL"),
        ({**SMS_ON, "sms_gateway_url": "sms.example.org/send"}, "CAREHUB_CHANNEL_SMS_GATEWAY_URL"),
        ({**SMS_ON, "sms_gateway_token": ""}, "CAREHUB_CHANNEL_SMS_GATEWAY_TOKEN"),
        ({**SMS_ON, "sms_from": ""}, "CAREHUB_CHANNEL_SMS_FROM"),
        ({**SMS_ON, "sms_from": "Riverside Clinic"}, "CAREHUB_CHANNEL_SMS_FROM"),  # longer than 11
        ({**SMS_ON, "sms_timeout_seconds": "soon"}, "CAREHUB_CHANNEL_SMS_TIMEOUT_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(settings: dict[str, str], named: str) -> None:
    with pytest.raises(PluginError, match=named):
        channels(settings)


def test_secrets_stay_out_of_the_settings_repr() -> None:
    """Settings end up in logs and tracebacks; the SMTP password and the gateway token must not."""
    secrets = {"smtp_username": "carehub", "smtp_password": "pw-s3cr3t", "sms_gateway_token": "tok-s3cr3t"}
    found = channels({**SMTP_ON, **SMS_ON, **secrets})
    assert set(found) == {"email", "sms"}
    for channel in found.values():
        assert "s3cr3t" not in repr(channel.settings)  # type: ignore[attr-defined]


def test_bundled_plugins_import_only_the_sdk() -> None:
    """A plugin gets payloads and returns results; it never reaches into the host's packages."""
    host_packages = {"core", "tenants", "api", "admin", "migrations"}
    offenders = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in host_packages]
    assert offenders == []


# ---------------------------------------------------------------------------------------------------------------
# Email through a real SMTP server


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts, refuses the recipients it is told to."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before answering RCPT and DATA

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        await asyncio.sleep(self.delay)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        assert isinstance(envelope.content, bytes)
        email = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(email, EmailMessage)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), email))
        return "250 2.0.0 Ok: queued"


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def config(self, **extra: str) -> dict[str, str]:
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(self.port),
            "smtp_security": "none",
            "smtp_from": SENDER,
            **extra,
        }

    def channel(self, **extra: str) -> Channel:
        return only(channels(self.config(**extra)), "email")


def start_smtp(**kwargs: Any) -> tuple[Controller, SmtpServer]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller, SmtpServer(mailbox, controller.port)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    controller, server = start_smtp()
    yield server
    controller.stop()


async def test_email_arrives_as_the_patient_sees_it(smtp: SmtpServer) -> None:
    message = notification()
    reference = await smtp.channel().send(message)

    [(mail_from, rcpt_tos, email)] = smtp.mailbox.received
    assert (mail_from, rcpt_tos) == (SENDER, [PATIENT_EMAIL])
    assert email["From"] == f"Riverside Clinic <{SENDER}>"
    assert email["To"] == PATIENT_EMAIL
    assert email["Subject"] == "Appointment reminder"
    assert email.get_content_type() == "text/plain"
    assert email.get_content().strip() == message.text
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Date"]
    assert email["Message-ID"] == reference == "<ntf-7f3a9c@carehub.example.org>"


async def test_a_retried_email_keeps_its_message_id(smtp: SmtpServer) -> None:
    channel = smtp.channel()
    odd_id = "ntf/with spaces@and<brackets>"
    first = await channel.send(notification(id=odd_id))
    second = await channel.send(notification(id=odd_id))
    other = await channel.send(notification(id="ntf-other"))
    ids = [email["Message-ID"] for _, _, email in smtp.mailbox.received]
    assert ids == [first, second, other]
    assert first == second != other
    assert first is not None and " " not in first and first.count("<") == 1


async def test_accents_and_line_breaks_in_headers(smtp: SmtpServer) -> None:
    await smtp.channel().send(
        notification(
            sender_name="Clínica San José, Norte",
            subject="Cita confirmada\r\nBcc: someone@evil.example",
            text="Su cita es el lunes a las 9:00.\nTraiga su tarjeta sanitaria, por favor. ¡Gracias!",
        )
    )
    [(_, rcpt_tos, email)] = smtp.mailbox.received
    assert rcpt_tos == [PATIENT_EMAIL]
    assert email["Bcc"] is None
    assert email["Subject"] == "Cita confirmada Bcc: someone@evil.example"
    assert email["From"].addresses[0].display_name == "Clínica San José, Norte"
    assert email["From"].addresses[0].addr_spec == SENDER
    assert "¡Gracias!" in email.get_content()


async def test_refused_recipient_is_permanent(smtp: SmtpServer) -> None:
    smtp.mailbox.refuse[PATIENT_EMAIL] = "550 5.1.1 No such user"
    with pytest.raises(ChannelError, match="550") as failure:
        await smtp.channel().send(notification())
    assert failure.value.permanent
    assert smtp.mailbox.received == []


async def test_greylisted_recipient_is_transient(smtp: SmtpServer) -> None:
    smtp.mailbox.refuse[PATIENT_EMAIL] = "451 4.7.1 Greylisted, try again later"
    with pytest.raises(ChannelError, match="451") as failure:
        await smtp.channel().send(notification())
    assert not failure.value.permanent


async def test_invalid_address_is_permanent_and_not_sent(smtp: SmtpServer) -> None:
    for bad in ("not-an-address", "a@b.org, c@d.org", "a@b.org\r\nBcc: c@d.org"):
        with pytest.raises(ChannelError) as failure:
            await smtp.channel().send(notification(to=bad))
        assert failure.value.permanent
    assert smtp.mailbox.received == []


async def test_closed_port_is_transient() -> None:
    channel = SmtpServer(Mailbox(), free_port()).channel()
    with pytest.raises(ChannelError) as failure:
        await channel.send(notification())
    assert not failure.value.permanent


@pytest.mark.slow
async def test_silent_server_times_out_as_transient() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog does) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        channel = SmtpServer(Mailbox(), silent.getsockname()[1]).channel(smtp_timeout_seconds="0.5")
        started = time.monotonic()
        with pytest.raises(ChannelError) as failure:
            await channel.send(notification())
        assert time.monotonic() - started < 3
    assert not failure.value.permanent


@pytest.mark.slow
async def test_slow_server_is_cut_off_at_the_timeout(smtp: SmtpServer) -> None:
    """Each reply comes within the timeout, all of them together do not: the channel gives up at the timeout
    (carehub stops waiting soon after it, and a conversation that went on could deliver a message counted as
    failed)."""
    smtp.mailbox.delay = 0.4
    channel = smtp.channel(smtp_timeout_seconds="0.5")
    started = time.monotonic()
    with pytest.raises(ChannelError, match=r"longer than 0\.5 s") as failure:
        await channel.send(notification())
    assert time.monotonic() - started < 0.75
    assert not failure.value.permanent


async def test_starttls_required_but_server_offers_none(smtp: SmtpServer) -> None:
    """The default (starttls) never falls back to clear text: the operator has to choose security=none."""
    with pytest.raises(ChannelError, match="CAREHUB_CHANNEL_SMTP_SECURITY") as failure:
        await smtp.channel(smtp_security="starttls").send(notification())
    assert failure.value.permanent
    assert smtp.mailbox.received == []


def check_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"carehub", b"correct-horse")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


# aiosmtpd warns that it accepts passwords in clear text, which is what these tests want.
AUTH_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture
def smtp_with_auth() -> Iterator[SmtpServer]:
    controller, server = start_smtp(authenticator=check_login, auth_required=True, auth_require_tls=False)
    yield server
    controller.stop()


@AUTH_WITHOUT_TLS
async def test_login(smtp_with_auth: SmtpServer) -> None:
    channel = smtp_with_auth.channel(smtp_username="carehub", smtp_password="correct-horse")
    await channel.send(notification())
    assert len(smtp_with_auth.mailbox.received) == 1


@AUTH_WITHOUT_TLS
async def test_wrong_password_names_the_settings(smtp_with_auth: SmtpServer) -> None:
    channel = smtp_with_auth.channel(smtp_username="carehub", smtp_password="wrong")
    with pytest.raises(ChannelError, match="CAREHUB_CHANNEL_SMTP_PASSWORD") as failure:
        await channel.send(notification())
    assert failure.value.permanent  # a 535 reply: the same password will not work next time either
    assert smtp_with_auth.mailbox.received == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made in process with the cryptography library (no outside
    command that a machine might lack)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def trusted_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context whose certificate the client trusts (through OpenSSL's SSL_CERT_FILE), so that the
    channel's certificate verification stays on."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.slow
async def test_starttls_with_login(trusted_tls: ssl.SSLContext) -> None:
    controller, server = start_smtp(
        tls_context=trusted_tls, require_starttls=True, authenticator=check_login, auth_required=True
    )
    try:
        await server.channel(smtp_security="starttls", smtp_username="carehub", smtp_password="correct-horse").send(
            notification()
        )
    finally:
        controller.stop()
    assert len(server.mailbox.received) == 1


@pytest.mark.slow
async def test_implicit_tls(trusted_tls: ssl.SSLContext) -> None:
    controller, server = start_smtp(ssl_context=trusted_tls)
    try:
        await server.channel(smtp_security="ssl").send(notification())
    finally:
        controller.stop()
    assert len(server.mailbox.received) == 1


@pytest.mark.slow
async def test_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller, server = start_smtp(tls_context=context, require_starttls=True)
    try:
        with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED") as failure:
            await server.channel(smtp_security="starttls").send(notification())
    finally:
        controller.stop()
    assert not failure.value.permanent
    assert server.mailbox.received == []


# ---------------------------------------------------------------------------------------------------------------
# SMS through an HTTP gateway speaking the documented protocol


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"id": "gw-123", "status": "queued"}'
    stall: bool = False  # never answer
    drip: bool = False  # answer, but one byte at a time, too slowly to finish


@dataclass
class Gateway:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)  # the next answers, in order; then 200s
    release: threading.Event = field(default_factory=threading.Event)

    def config(self, **extra: str) -> dict[str, str]:
        return {"sms_gateway_url": self.url, "sms_gateway_token": "gw-secret", "sms_from": "Riverside", **extra}

    def channel(self, **extra: str) -> Channel:
        return only(channels(self.config(**extra)), "sms")


def gateway_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            gateway.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            reply = gateway.replies.pop(0) if gateway.replies else Reply()
            if reply.stall:
                gateway.release.wait(10)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body) * (100 if reply.drip else 1)))
            self.end_headers()
            if reply.drip:
                for _ in range(25):  # 5 s, each byte well inside a read timeout of 0.5 s
                    if gateway.release.wait(0.2):
                        break
                    self.wfile.write(b" ")
                    self.wfile.flush()
                return
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads the recorded requests instead."""

    return Handler


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gateway = Gateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway_handler(gateway))
    server.daemon_threads = True
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}/v1/messages"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield gateway
    gateway.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def sms(**overrides: str) -> OutboundMessage:
    return notification(**{"channel": "sms", "to": PATIENT_PHONE, **overrides})


async def test_sms_request_follows_the_protocol(gateway: Gateway) -> None:
    message = sms()
    reference = await gateway.channel().send(message)

    assert reference == "gw-123"
    [request] = gateway.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["Authorization"] == "Bearer gw-secret"
    assert request["headers"]["Idempotency-Key"] == message.id
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["json"] == {"to": PATIENT_PHONE, "from": "Riverside", "text": message.text, "reference": message.id}


async def test_sms_accepted_without_an_id(gateway: Gateway) -> None:
    gateway.replies += [Reply(202, b"queued"), Reply(200, b'{"id": 981}'), Reply(200, b"[]")]
    channel = gateway.channel()
    assert [await channel.send(sms()) for _ in range(3)] == [None, "981", None]


async def test_long_sms_is_cut_to_three_segments(gateway: Gateway) -> None:
    long_text = "Reminder: " + "please bring your medication list and insurance card. " * 20
    await gateway.channel().send(sms(text=long_text))
    sent = gateway.requests[0]["json"]["text"]
    assert len(sent) == 480
    assert sent.endswith("...")
    assert long_text.startswith(sent[:-3])


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)])
async def test_sms_gateway_answers(gateway: Gateway, status: int, permanent: bool) -> None:
    gateway.replies.append(Reply(status, b'{"error": "number not reachable"}'))
    with pytest.raises(ChannelError, match=str(status)) as failure:
        await gateway.channel().send(sms())
    assert failure.value.permanent is permanent
    assert "number not reachable" in str(failure.value)


async def test_sms_to_a_number_not_in_e164_is_permanent_and_not_sent(gateway: Gateway) -> None:
    for bad in ("5551234567", "+0123456", "+1 555 123 4567", "+1555123456789012"):
        with pytest.raises(ChannelError, match=r"E\.164") as failure:
            await gateway.channel().send(sms(to=bad))
        assert failure.value.permanent
    assert gateway.requests == []


@pytest.mark.parametrize("reply", [Reply(stall=True), Reply(drip=True)], ids=["no answer", "answer too slow"])
async def test_sms_gateway_timeout_is_transient(gateway: Gateway, reply: Reply) -> None:
    gateway.replies.append(reply)
    channel = gateway.channel(sms_timeout_seconds="0.5")
    started = time.monotonic()
    with pytest.raises(ChannelError, match=r"0\.5 s") as failure:
        await channel.send(sms())
    assert time.monotonic() - started < 2
    assert not failure.value.permanent


async def test_sms_gateway_down_is_transient() -> None:
    gateway = Gateway(url=f"http://127.0.0.1:{free_port()}/send")
    with pytest.raises(ChannelError) as failure:
        await gateway.channel().send(sms())
    assert not failure.value.permanent


# ---------------------------------------------------------------------------------------------------------------
# The example plugin in docs/plugins/channels.md, registered the way an installed plugin is


def docs_example(folder: Path) -> ModuleType:
    """The example plugin's code block from the vendors' documentation, as an importable module."""
    blocks = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "plugins" / "channels.md").read_text(), flags=re.DOTALL
    )
    [code] = [block for block in blocks if "@hookimpl" in block and "class AcmeSmsChannel" in block]
    path = folder / "carehub_acme_sms.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("carehub_acme_sms", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_plugins(tmp_path: Path) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    pm.register(docs_example(tmp_path), name="acme_sms")
    pm.check_pending()
    return pm


async def test_docs_example_plugin_sends(example_plugins: pluggy.PluginManager, gateway: Gateway) -> None:
    assert channels({}, pm=example_plugins) == {}
    config = {"acme_sms_url": gateway.url, "acme_sms_key": "acme-key"}
    channel = only(channels(config, pm=example_plugins), "sms")
    assert "acme-key" not in repr(channel)

    gateway.replies += [Reply(201, b'{"message_id": "acme-1"}'), Reply(503), Reply(400)]
    message = sms()
    assert await channel.send(message) == "acme-1"
    [request] = gateway.requests
    assert request["headers"]["X-Api-Key"] == "acme-key"
    assert request["headers"]["Idempotency-Key"] == message.id
    assert request["json"] == {"destination": PATIENT_PHONE, "body": message.text, "client_ref": message.id}
    for permanent in (False, True):
        with pytest.raises(ChannelError) as failure:
            await channel.send(message)
        assert failure.value.permanent is permanent


def test_docs_example_plugin_names_bad_settings(example_plugins: pluggy.PluginManager) -> None:
    with pytest.raises(PluginError, match="CAREHUB_CHANNEL_ACME_SMS_URL"):
        channels({"acme_sms_url": "http://api.acme-messaging.example/v2", "acme_sms_key": "k"}, pm=example_plugins)
    with pytest.raises(PluginError, match="CAREHUB_CHANNEL_ACME_SMS_KEY"):
        channels({"acme_sms_url": "https://api.acme-messaging.example/v2"}, pm=example_plugins)
