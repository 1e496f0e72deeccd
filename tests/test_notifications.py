"""Alert rules with tenant settings, and notifications: appointment reminders to patients, escalation of
unacknowledged critical results, quiet hours, staff copies of alerts - delivered through the bundled channels
to a real SMTP server and a local SMS gateway, on a controllable clock (scheduler ticks at chosen times)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.jobs import scheduler
from core.notify import delivery
from tests.conftest import World, login, portal_login
from tests.factories import patient_body
from tests.test_jobs import Running, _process, _staff_ids, db, jobs  # noqa: F401 - fixtures

REASON = "Review of HbA1c 9.2% and insulin dose"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


class _Gateway(ThreadingHTTPServer):
    """An SMS gateway speaking the bundled channel's protocol: it records each message and answers from a script."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []  # statuses to give, in order; then 200


class _GatewayHandler(BaseHTTPRequestHandler):
    server: _Gateway

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.server.answers.pop(0) if self.server.answers else 200
        if status == 200:
            self.server.received.append(body)
        payload = json.dumps({"id": f"sms-{len(self.server.received)}"} if status == 200 else {"error": "no"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: Any) -> None:
        pass


class Outside:
    """What left carehub: the emails the SMTP server accepted and the texts the SMS gateway accepted."""

    def __init__(self, mailbox: _Mailbox, gateway: _Gateway) -> None:
        self.mailbox = mailbox
        self.gateway = gateway

    @property
    def emails(self) -> list[EmailMessage]:
        return self.mailbox.messages

    @property
    def texts(self) -> list[dict[str, Any]]:
        return self.gateway.received


@pytest.fixture
def outside() -> Iterator[Outside]:
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    gateway = _Gateway()
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    delivery.configure(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp.port),
            "smtp_security": "none",
            "smtp_from": "alerts@carehub.example",
            "sms_gateway_url": f"http://127.0.0.1:{gateway.server_address[1]}/messages",
            "sms_gateway_token": "test-token",
            "sms_from": "+15550009999",
            "sms_timeout_seconds": "5",
        }
    )
    try:
        yield Outside(mailbox, gateway)
    finally:
        delivery.configure({})
        gateway.shutdown()
        gateway.server_close()
        smtp.stop()


async def _settings(client: AsyncTestClient[Any], admin: dict[str, str], **changes: Any) -> dict[str, Any]:
    answer = await client.put("/api/v1/alert-settings", headers=admin, json=changes)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _notifications(client: AsyncTestClient[Any], staff: dict[str, str], patient_id: str) -> list[dict[str, Any]]:
    answer = await client.get(f"/api/v1/patients/{patient_id}/notifications?limit=100", headers=staff)
    assert answer.status_code == 200, answer.text
    return sorted(answer.json()["items"], key=lambda n: (n["created_at"], n["channel"]))


async def _appointment(
    client: AsyncTestClient[Any], admin: dict[str, str], patient_id: str, doc_id: str, start: datetime, **reminder: Any
) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/appointments",
        headers=admin,
        json={
            "patient_id": patient_id,
            "participant_id": doc_id,
            "kind": "in_person",
            "location": "Riverside Clinic, 12 Main Street",
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(minutes=30)).isoformat(),
            "reason": REASON,
            "reminder": reminder,
        },
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def test_alert_settings_have_defaults_and_name_the_field_in_errors(
    client: AsyncTestClient[Any], world: World
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    defaults = (await client.get("/api/v1/alert-settings", headers=admin)).json()
    assert defaults["overdue_escalation_minutes"] == [0, 60, 240]
    assert defaults["critical_result_escalation_minutes"] == [30, 60]
    assert defaults["patient_quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert defaults["timezone"] == "UTC" and defaults["updated_at"] is None

    for body, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"overdue_escalation_minutes": [60, 0]}, "overdue_escalation_minutes"),
        ({"critical_result_escalation_minutes": [30, 30]}, "critical_result_escalation_minutes"),
        ({"patient_quiet_hours": {"start": "25:00", "end": "08:00"}}, "patient_quiet_hours.start"),
        ({"noshow_follow_up_hours": 0}, "noshow_follow_up_hours"),
    ):
        answer = await client.put("/api/v1/alert-settings", headers=admin, json=body)
        assert answer.status_code in (400, 422), answer.text
        assert field in answer.text, (field, answer.text)
    assert (await client.put("/api/v1/alert-settings", headers=doc, json={})).status_code == 403

    stored = await _settings(client, admin, timezone="America/Chicago", overdue_escalation_minutes=[0, 15])
    assert stored["timezone"] == "America/Chicago" and stored["overdue_escalation_minutes"] == [0, 15]
    again = (await client.get("/api/v1/alert-settings", headers=admin)).json()
    assert again["overdue_escalation_minutes"] == [0, 15] and again["updated_at"]
    # Another tenant keeps its defaults.
    admin_b = await login(client, "admin.b@test.example", world.slug_b)
    assert (await client.get("/api/v1/alert-settings", headers=admin_b)).json()["timezone"] == "UTC"


async def test_appointment_reminders_go_out_once_per_offset_without_clinical_detail(
    client: AsyncTestClient[Any],
    world: World,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
    outside: Outside,
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    await _settings(client, admin, timezone="America/New_York", patient_quiet_hours=None)
    patient = (
        await client.post("/api/v1/patients", json=patient_body("NT-1", email="ada@example.org"), headers=admin)
    ).json()
    start = (datetime.now(UTC) + timedelta(hours=80)).replace(minute=0, second=0, microsecond=0)
    await _appointment(
        client, admin, patient["id"], ids["doc.a"], start, channels=["in_app", "sms", "email"], offsets_hours=[72, 24]
    )

    async def at(hours_before: float) -> list[dict[str, Any]]:
        await scheduler.tick(db, start - timedelta(hours=hours_before))
        await _process(db, jobs)
        return await _notifications(client, admin, patient["id"])

    assert await at(75) == []  # too early for the 72-hour reminder
    first = await at(71.5)
    assert sorted((n["channel"], n["status"]) for n in first) == [
        ("email", "sent"),
        ("in_app", "sent"),
        ("sms", "sent"),
    ]
    assert await at(70) == first  # a later tick sends nothing again

    local = start.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    when = f"{local:%a %d %b %Y} at {local:%H:%M}"
    [text] = outside.texts
    [email] = outside.emails
    assert text["to"] == "+15550100" and when in text["text"] and "Riverside Clinic, 12 Main Street" in text["text"]
    assert email["To"] == "ada@example.org" and when in email.get_content()
    for outgoing in (text["text"], email.get_content(), email["Subject"]):
        assert "HbA1c" not in outgoing and "insulin" not in outgoing  # no clinical detail outside carehub
    portal_copy = next(n for n in first if n["channel"] == "in_app")
    assert REASON in portal_copy["text"]  # the portal may say why

    # The patient signs in to the portal and chooses email only: their choice wins over the appointment's.
    portal = await portal_login(client, admin, patient["id"], "ada.portal@example.org", world.slug_a)
    chosen = await client.put("/api/v1/portal/notification-preferences", headers=portal, json={"channels": ["email"]})
    assert chosen.status_code == 200 and chosen.json()["channels"] == ["email"]
    second = await at(23)
    assert len(second) == 5 and len(outside.texts) == 1 and len(outside.emails) == 2

    # The patient reads the reminders in the portal (only the in-app copies, only their own).
    inbox = (await client.get("/api/v1/portal/notifications", headers=portal)).json()["items"]
    assert [n["channel"] for n in inbox] == ["in_app", "in_app"] and all(n["read_at"] is None for n in inbox)
    read = await client.post(f"/api/v1/portal/notifications/{inbox[0]['id']}/read", headers=portal)
    assert read.status_code == 200 and read.json()["read_at"]
    sms_id = next(n["id"] for n in second if n["channel"] == "sms")  # the first reminder's text
    assert (await client.post(f"/api/v1/portal/notifications/{sms_id}/read", headers=portal)).status_code == 404


async def test_quiet_hours_hold_a_reminder_until_they_end(
    client: AsyncTestClient[Any],
    world: World,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
    outside: Outside,
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("NT-2"), headers=admin)).json()
    now = datetime.now(UTC)
    quiet = {"start": f"{now - timedelta(hours=1):%H:%M}", "end": f"{now + timedelta(hours=1):%H:%M}"}
    pref = await client.put(
        f"/api/v1/patients/{patient['id']}/notification-preferences",
        headers=admin,
        json={"channels": ["sms"], "phone": "+15557654321", "quiet_hours": quiet, "timezone": "UTC"},
    )
    assert pref.status_code == 200 and pref.json()["quiet_hours"] == quiet
    bad = await client.put(
        f"/api/v1/patients/{patient['id']}/notification-preferences", headers=admin, json={"phone": "555-0100"}
    )
    assert bad.status_code in (400, 422) and "phone" in bad.text
    start = now + timedelta(hours=20)
    await _appointment(client, admin, patient["id"], ids["doc.a"], start, channels=["sms", "email"], offsets_hours=[24])

    await scheduler.tick(db, now)
    await _process(db, jobs)
    [sms] = [n for n in await _notifications(client, admin, patient["id"]) if n["channel"] != "in_app"]
    # Email was asked for by the appointment but the patient chose text messages only.
    assert sms["channel"] == "sms" and sms["status"] == "deferred" and outside.texts == []
    ends = datetime.fromisoformat(sms["not_before"])
    assert timedelta(minutes=50) < ends - now <= timedelta(hours=1)

    await scheduler.tick(db, ends - timedelta(minutes=5))  # still quiet
    await _process(db, jobs)
    assert outside.texts == []
    await scheduler.tick(db, ends + timedelta(minutes=1))
    await _process(db, jobs)
    [sms] = [n for n in await _notifications(client, admin, patient["id"]) if n["channel"] != "in_app"]
    assert sms["status"] == "sent" and [t["to"] for t in outside.texts] == ["+15557654321"]


async def test_an_unacknowledged_critical_result_escalates_and_acknowledging_settles_it(
    client: AsyncTestClient[Any],
    world: World,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
    outside: Outside,
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    # The clinician wants critical alerts by email too; the care team's lead is the community health worker.
    mine = await client.put("/api/v1/me/notification-preferences", headers=doc, json={"channels": ["email"]})
    assert mine.status_code == 200 and mine.json()["min_severity"] == "critical"
    patient = (await client.post("/api/v1/patients", json=patient_body("NT-3"), headers=admin)).json()
    await client.post(
        f"/api/v1/patients/{patient['id']}/care-team",
        headers=admin,
        json={"members": [{"user_id": ids["chw.a"], "role": "chw", "is_lead": True}]},
    )
    await _settings(client, admin, critical_result_escalation_minutes=[20, 45])
    result = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/results",
            headers=admin,
            json={
                "code": "2823-3",
                "display": "Potassium",
                "value": "6.9",
                "unit": "mmol/L",
                "interpretation": "critical",
                "status": "final",
                "effective_at": datetime.now(UTC).isoformat(),
                "ordered_by": ids["doc.a"],
            },
        )
    ).json()
    received = datetime.fromisoformat(result["created_at"])
    await _process(db, jobs)
    [email] = outside.emails
    assert email["To"] == "doc.a@test.example" and "critical" in email["Subject"].lower()
    assert "Potassium" not in email.get_content() and "6.9" not in email.get_content()

    async def unacknowledged(headers: dict[str, str]) -> list[str]:
        items = (await client.get("/api/v1/alerts", headers=headers)).json()["items"]
        return [a["title"] for a in items if a["kind"] == "lab.critical.unacknowledged"]

    async def at(minutes: int) -> None:
        await scheduler.tick(db, received + timedelta(minutes=minutes))
        await _process(db, jobs)

    await at(15)
    assert await unacknowledged(chw) == [] and await unacknowledged(admin) == []
    await at(22)  # past 20 minutes: the care team lead
    assert [t.split(":")[0] for t in await unacknowledged(chw)] == ["Critical result not acknowledged for 21 min"]
    await at(23)
    assert len(await unacknowledged(chw)) == 1  # once per level
    await at(47)  # past 45 minutes: the tenant's administrators
    assert len(await unacknowledged(admin)) == 1
    stored = (await client.get(f"/api/v1/results/{result['id']}", headers=doc)).json()
    assert stored["escalation_level"] == 2 and stored["time_to_acknowledge_seconds"] is None

    acknowledged = (await client.post(f"/api/v1/results/{result['id']}/acknowledge", headers=doc)).json()
    assert acknowledged["time_to_acknowledge_seconds"] >= 0
    await _process(db, jobs)
    for headers in (doc, chw, admin):  # every alert about the result is settled
        items = (await client.get("/api/v1/alerts", headers=headers)).json()["items"]
        assert [a for a in items if a["subject_id"] == result["id"]] == []
    assert len(outside.emails) == 1  # the lead and the admins chose no email: in-app only


async def test_overdue_escalation_follows_the_tenants_delays(
    client: AsyncTestClient[Any],
    world: World,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    await _settings(client, admin, overdue_escalation_minutes=[10, 30])
    patient = (await client.post("/api/v1/patients", json=patient_body("NT-4"), headers=admin)).json()
    due = datetime.now(UTC) + timedelta(hours=1)
    task = (
        await client.post(
            "/api/v1/tasks",
            headers=admin,
            json={
                "patient_id": patient["id"],
                "title": "Call back",
                "owner_id": ids["doc.a"],
                "due_at": due.isoformat(),
            },
        )
    ).json()

    async def level_at(minutes: int) -> int:
        await scheduler.tick(db, due + timedelta(minutes=minutes))
        await _process(db, jobs)
        return int((await client.get(f"/api/v1/tasks/{task['id']}", headers=admin)).json()["escalation_level"])

    assert await level_at(5) == 0  # the first escalation waits 10 minutes here
    assert await level_at(12) == 1
    assert await level_at(31) == 2
    assert await level_at(600) == 2  # two levels configured: no third
    titles = [a["title"] for a in (await client.get("/api/v1/alerts", headers=doc)).json()["items"]]
    assert titles == ["Overdue (level 2): Call back", "Overdue (level 1): Call back"]


async def test_a_text_that_fails_is_retried_and_a_refused_one_is_recorded(
    client: AsyncTestClient[Any],
    world: World,
    settings: Any,
    db: async_sessionmaker[AsyncSession],  # noqa: F811
    outside: Outside,
) -> None:
    fast = settings.model_copy(update={"job_min_backoff_ms": 10, "job_max_backoff_ms": 50})
    running = Running(fast)
    running.worker.start()
    try:
        admin = await login(client, "admin.a@test.example", world.slug_a)
        ids = await _staff_ids(client, admin)
        await _settings(client, admin, patient_quiet_hours=None)
        patient = (await client.post("/api/v1/patients", json=patient_body("NT-5"), headers=admin)).json()
        start = datetime.now(UTC) + timedelta(hours=10)
        outside.gateway.answers = [503, 500]  # the gateway is unwell twice, then accepts
        await _appointment(client, admin, patient["id"], ids["doc.a"], start, channels=["sms"], offsets_hours=[24])
        await scheduler.tick(db, datetime.now(UTC))
        await _process(db, running)
        [sms] = [n for n in await _notifications(client, admin, patient["id"]) if n["channel"] == "sms"]
        assert sms["status"] == "sent" and len(outside.texts) == 1

        other = (await client.post("/api/v1/patients", json=patient_body("NT-6"), headers=admin)).json()
        outside.gateway.answers = [400]  # the gateway refuses the number: no retry can help
        await _appointment(client, admin, other["id"], ids["doc.a"], start, channels=["sms"], offsets_hours=[24])
        await scheduler.tick(db, datetime.now(UTC) + timedelta(minutes=5))
        await _process(db, running)
        [sms] = [n for n in await _notifications(client, admin, other["id"]) if n["channel"] == "sms"]
        assert sms["status"] == "failed" and sms["last_error"] and len(outside.texts) == 1
    finally:
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()
