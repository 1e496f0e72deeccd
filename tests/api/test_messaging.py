"""Secure messaging through the HTTP API: participants only, immutable versions, receipts, attachments, portal."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from core.messaging.blobs import BlobNotFound, InvalidBlobKey, LocalBlobStore
from core.settings import Settings
from tests.conftest import World, login, portal_login
from tests.factories import patient_body

Headers = dict[str, str]


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
async def client(settings: Settings, blob_dir: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with its own blob directory, and room in a request for an attachment over the size limit."""
    configured = settings.model_copy(update={"blob_dir": blob_dir, "max_body_bytes": 8_000_000})
    async with AsyncTestClient(app=create_app(configured)) as test_client:
        yield test_client


async def _me(client: AsyncTestClient[Any], headers: Headers) -> str:
    return str((await client.get("/api/v1/auth/me", headers=headers)).json()["user_id"])


async def _patient(client: AsyncTestClient[Any], headers: Headers, mrn: str) -> str:
    created = await client.post("/api/v1/patients", json=patient_body(mrn), headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _thread(client: AsyncTestClient[Any], headers: Headers, **body: Any) -> dict[str, Any]:
    body.setdefault("subject", "Discharge follow-up")
    body.setdefault("body", "First message")
    created = await client.post("/api/v1/threads", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _messages(client: AsyncTestClient[Any], headers: Headers, thread_id: str) -> list[dict[str, Any]]:
    listed = await client.get(f"/api/v1/threads/{thread_id}/messages", headers=headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


async def _unread(client: AsyncTestClient[Any], headers: Headers, thread_id: str) -> int:
    thread = await client.get(f"/api/v1/threads/{thread_id}", headers=headers)
    assert thread.status_code == 200, thread.text
    return int(thread.json()["unread_count"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stored(blob_dir: Path) -> list[str]:
    return sorted(p.name for p in blob_dir.rglob("*") if p.is_file())


def _damage(blob: Path, data: bytes | None) -> None:
    if data is None:
        blob.unlink()
    else:
        blob.write_bytes(data)


def test_the_local_blob_store_is_content_addressed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = store.put(b"lab report")
    assert key == hashlib.sha256(b"lab report").hexdigest() and store.put(b"lab report") == key
    assert store.get(key) == b"lab report"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [key], "no temporary file is left behind"
    for bad in ("../../etc/passwd", key.upper(), key[:-1]):
        with pytest.raises(InvalidBlobKey):
            store.get(bad)
    with pytest.raises(BlobNotFound):
        store.get("0" * 64)


async def test_only_participants_see_a_thread(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    admin = await login(client, "admin.a@test.example", world.slug_a)
    other_tenant = await login(client, "admin.b@test.example", world.slug_b)
    patient_id = await _patient(client, doc, "MSG-1")
    chw_id, admin_id = await _me(client, chw), await _me(client, admin)

    thread = await _thread(client, doc, patient_id=patient_id, participant_user_ids=[chw_id])
    assert thread["patient_id"] == patient_id and thread["includes_patient"] is False
    assert sorted(p["name"] for p in thread["participants"]) == ["chw_a", "doc_a"]
    assert thread["unread_count"] == 0
    listed = (await client.get(f"/api/v1/threads?patient_id={patient_id}", headers=chw)).json()
    assert [t["id"] for t in listed["items"]] == [thread["id"]] and listed["items"][0]["unread_count"] == 1
    message = (await _messages(client, chw, thread["id"]))[0]
    assert message["body"] == "First message" and message["author"]["name"] == "doc_a"

    # A colleague who does not take part, and another tenant, get exactly the answer for a missing thread.
    assert (await client.get("/api/v1/threads", headers=admin)).json()["items"] == []
    base = f"/api/v1/threads/{thread['id']}"
    missing = f"/api/v1/threads/{uuid.uuid4()}"
    attempts: list[tuple[str, str, Any]] = [
        ("GET", "", None),
        ("GET", "/messages", None),
        ("POST", "/messages", {"body": "let me in"}),
        ("GET", f"/messages/{message['id']}/history", None),
        ("PATCH", f"/messages/{message['id']}", {"body": "changed"}),
        ("DELETE", f"/messages/{message['id']}", None),
        ("POST", "/read", None),
        ("POST", "/participants", {"user_id": admin_id}),
        ("GET", f"/attachments/{uuid.uuid4()}", None),
    ]
    for outsider in (admin, other_tenant):
        for method, suffix, body in attempts:
            answer = await client.request(method, base + suffix, json=body, headers=outsider)
            absent = await client.request(method, missing + suffix, json=body, headers=outsider)
            assert answer.status_code == 404, (method, suffix, answer.text)
            assert answer.json()["detail"] == absent.json()["detail"] == "thread not found"
    assert len(await _messages(client, doc, thread["id"])) == 1, "nothing was posted by outsiders"

    # A participant adds the colleague, who then sees the whole thread.
    added = await client.post(f"{base}/participants", json={"user_id": admin_id}, headers=chw)
    assert added.status_code == 201, added.text
    assert len(added.json()["participants"]) == 3
    again = await client.post(f"{base}/participants", json={"user_id": admin_id}, headers=chw)
    assert again.status_code == 409
    assert (await client.get(base, headers=admin)).json()["unread_count"] == 1
    stranger = await client.post(f"{base}/participants", json={"user_id": str(uuid.uuid4())}, headers=doc)
    assert stranger.status_code == 422 and stranger.json()["errors"][0]["field"] == "user_id"

    # Reads and refusals are audited with the patient.
    events = (await client.get(f"/api/v1/audit-events?patient_id={patient_id}&limit=100", headers=admin)).json()
    actions = {(e["action"], e["outcome"]) for e in events["items"]}
    assert {("thread.create", "success"), ("message.list", "success"), ("thread.read", "not_found")} <= actions
    assert ("thread.list", "success") in actions


async def test_versions_tombstones_and_receipts(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    patient_id = await _patient(client, doc, "MSG-2")
    thread = await _thread(client, doc, patient_id=patient_id, participant_user_ids=[await _me(client, chw)])
    base = f"/api/v1/threads/{thread['id']}"
    first = (await _messages(client, doc, thread["id"]))[0]
    doc_part = first["author"]["participant_id"]
    chw_part = next(p["id"] for p in thread["participants"] if p["id"] != doc_part)

    reply = await client.post(f"{base}/messages", json={"body": "Visited today"}, headers=chw)
    assert reply.status_code == 201, reply.text
    assert (await _unread(client, doc, thread["id"]), await _unread(client, chw, thread["id"])) == (1, 1)

    # Only the author edits; an edit is a new version of the same message, the old one kept in the history.
    refused = await client.patch(f"{base}/messages/{first['id']}", json={"body": "hijack"}, headers=chw)
    assert refused.status_code == 403
    edited = await client.patch(f"{base}/messages/{first['id']}", json={"body": "First message, fixed"}, headers=doc)
    assert edited.status_code == 200, edited.text
    assert (edited.json()["version"], edited.json()["edited"], edited.json()["original_id"]) == (2, True, first["id"])
    assert edited.json()["id"] != first["id"]
    history = (await client.get(f"{base}/messages/{edited.json()['id']}/history", headers=chw)).json()
    assert [(m["version"], m["body"]) for m in history] == [(1, "First message"), (2, "First message, fixed")]
    listed = await _messages(client, chw, thread["id"])
    assert [(m["body"], m["version"]) for m in listed] == [("First message, fixed", 2), ("Visited today", 1)]

    # Receipts are per participant and message (an edit keeps it read).
    read = await client.post(f"{base}/read", headers=chw)
    assert read.status_code == 200 and read.json()["unread_count"] == 0
    listed = await _messages(client, doc, thread["id"])
    assert [r["participant_id"] for r in listed[0]["read_by"]] == [chw_part]
    assert listed[1]["read_by"] == []
    assert await _unread(client, doc, thread["id"]) == 1
    await client.patch(f"{base}/messages/{first['id']}", json={"body": "First message, fixed again"}, headers=doc)
    assert await _unread(client, chw, thread["id"]) == 0

    # A delete is a tombstone version: no body, not unread, still in the history; deleting again changes nothing.
    oops = (await client.post(f"{base}/messages", json={"body": "wrong patient"}, headers=doc)).json()
    assert await _unread(client, chw, thread["id"]) == 1
    refused = await client.delete(f"{base}/messages/{oops['id']}", headers=chw)
    assert refused.status_code == 403
    tombstone = await client.delete(f"{base}/messages/{oops['id']}", headers=doc)
    assert tombstone.status_code == 200, tombstone.text
    assert (tombstone.json()["deleted"], tombstone.json()["body"], tombstone.json()["version"]) == (True, None, 2)
    again = await client.delete(f"{base}/messages/{oops['id']}", headers=doc)
    assert again.json()["id"] == tombstone.json()["id"]
    assert await _unread(client, chw, thread["id"]) == 0
    gone = (await _messages(client, chw, thread["id"]))[-1]
    assert (gone["original_id"], gone["deleted"], gone["body"]) == (oops["id"], True, None)
    # What was deleted is no longer shown, not even in the history (the rows themselves are never changed).
    history = (await client.get(f"{base}/messages/{oops['id']}/history", headers=chw)).json()
    assert [(m["deleted"], m["body"], m["edited"]) for m in history] == [(True, None, False)]
    edit_deleted = await client.patch(f"{base}/messages/{oops['id']}", json={"body": "back"}, headers=doc)
    assert edit_deleted.status_code == 409

    # A message id must belong to the thread in the path.
    other = await _thread(client, doc, patient_id=patient_id)
    for method in ("GET", "PATCH", "DELETE"):
        suffix = "/history" if method == "GET" else ""
        body = {"body": "x"} if method == "PATCH" else None
        wrong = await client.request(
            method, f"/api/v1/threads/{other['id']}/messages/{first['id']}{suffix}", json=body, headers=doc
        )
        assert wrong.status_code == 404 and wrong.json()["detail"] == "message not found"
    threads = (await client.get("/api/v1/threads", headers=doc)).json()["items"]
    assert [t["id"] for t in threads] == [other["id"], thread["id"]], "most recent message first"
    assert (await client.get("/api/v1/threads", headers=chw)).json()["items"][0]["id"] == thread["id"]


async def test_attachments_are_checked_and_all_or_nothing(
    client: AsyncTestClient[Any], world: World, blob_dir: Path
) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    patient_id = await _patient(client, doc, "MSG-3")
    pdf = b"%PDF-1.4 discharge summary\n" * 10
    sha = hashlib.sha256(pdf).hexdigest()
    thread = await _thread(
        client,
        doc,
        patient_id=patient_id,
        attachments=[{"name": "résumé de sortie.pdf", "content_type": "application/pdf", "data": _b64(pdf)}],
    )
    base = f"/api/v1/threads/{thread['id']}"
    [message] = await _messages(client, doc, thread["id"])
    [attachment] = message["attachments"]
    assert (attachment["size"], attachment["sha256"], attachment["name"]) == (len(pdf), sha, "résumé de sortie.pdf")

    download = await client.get(f"{base}/attachments/{attachment['id']}", headers=doc)
    assert download.status_code == 200, download.text
    assert download.content == pdf and hashlib.sha256(download.content).hexdigest() == sha
    assert download.headers["content-type"].startswith("application/pdf")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["etag"] == f'"{sha}"'
    assert download.headers["digest"] == "sha-256=" + base64.b64encode(hashlib.sha256(pdf).digest()).decode()
    disposition = download.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="r_sum_ de sortie.pdf"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20de%20sortie.pdf" in disposition

    # A bad attachment refuses the whole message, naming it; nothing is stored.
    good = {"name": "ok.txt", "content_type": "text/plain", "data": _b64(b"fine")}
    too_big = _b64(b"\0" * (5 * 1024 * 1024 + 1))
    for bad, field in (
        ({"name": "x.txt", "content_type": "text/plain", "data": "not base64!"}, "attachments[1].data"),
        ({"name": "x.bin", "content_type": "application/octet-stream", "data": too_big}, "attachments[1].data"),
        ({"name": "../../etc/passwd", "content_type": "text/plain", "data": _b64(b"x")}, "attachments[1].name"),
        (
            {"name": "x.html", "content_type": "text/html\r\nX-Evil: 1", "data": _b64(b"x")},
            "attachments[1].content_type",
        ),
    ):
        refused = await client.post(
            f"{base}/messages", json={"body": "see files", "attachments": [good, bad]}, headers=doc
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field
        refused = await client.post(
            "/api/v1/threads",
            json={"patient_id": patient_id, "subject": "s", "body": "b", "attachments": [good, bad]},
            headers=doc,
        )
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field
    assert len(await _messages(client, doc, thread["id"])) == 1
    assert len((await client.get("/api/v1/threads", headers=doc)).json()["items"]) == 1
    assert _stored(blob_dir) == [sha], "only the accepted file is stored"

    # The bytes are checked on every read: damaged or missing content is a clear problem, never a crash.
    blob = blob_dir / sha[:2] / sha
    _damage(blob, pdf.replace(b"discharge", b"DISCHARGE"))
    damaged = await client.get(f"{base}/attachments/{attachment['id']}", headers=doc)
    assert damaged.status_code == 503 and damaged.headers["content-type"].startswith("application/problem+json")
    assert "missing or damaged" in damaged.json()["detail"]
    _damage(blob, None)
    missing = await client.get(f"{base}/attachments/{attachment['id']}", headers=doc)
    assert missing.status_code == 503 and "missing or damaged" in missing.json()["detail"]

    # Another thread's path does not reach the attachment; a deleted message's attachments are gone.
    other = await _thread(client, doc, patient_id=patient_id)
    wrong = await client.get(f"/api/v1/threads/{other['id']}/attachments/{attachment['id']}", headers=doc)
    assert wrong.status_code == 404 and wrong.json()["detail"] == "attachment not found"
    await client.delete(f"{base}/messages/{message['id']}", headers=doc)
    deleted = await client.get(f"{base}/attachments/{attachment['id']}", headers=doc)
    assert deleted.status_code == 404


async def test_portal_patient_takes_part_in_their_threads_only(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    patient_id = await _patient(client, doc, "MSG-4")
    other_patient = await _patient(client, doc, "MSG-5")
    chw_id = await _me(client, chw)
    shared = await _thread(client, doc, patient_id=patient_id, include_patient=True, subject="Your medication")
    staff_only = await _thread(client, doc, patient_id=patient_id, subject="Staff discussion")
    not_theirs = await _thread(client, doc, patient_id=other_patient, include_patient=True)
    assert shared["includes_patient"] is True
    patient = await portal_login(client, doc, patient_id, "ada@patients.example", world.slug_a)

    # The staff routes are not the portal's: a patient is sent to /api/v1/portal/threads.
    staff_route = await client.get("/api/v1/threads", headers=patient)
    assert staff_route.status_code == 403
    portal = "/api/v1/portal/threads"
    listed = (await client.get(portal, headers=patient)).json()["items"]
    assert [t["id"] for t in listed] == [shared["id"]]
    assert listed[0]["unread_count"] == 1
    for hidden in (staff_only, not_theirs):
        for path in ("", "/messages"):
            answer = await client.get(f"{portal}/{hidden['id']}{path}", headers=patient)
            assert answer.status_code == 404 and answer.json()["detail"] == "thread not found"

    reply = await client.post(f"{portal}/{shared['id']}/messages", json={"body": "Thank you"}, headers=patient)
    assert reply.status_code == 201, reply.text
    author = reply.json()["author"]
    assert (author["is_patient"], author["name"]) == (True, "Ada Lovelace") and "user_id" not in author
    assert (await client.post(f"{portal}/{shared['id']}/read", headers=patient)).json()["unread_count"] == 0
    assert await _unread(client, doc, shared["id"]) == 1
    added = await client.post(f"/api/v1/threads/{shared['id']}/participants", json={"user_id": chw_id}, headers=patient)
    assert added.status_code == 403

    # A patient writes to their care team: without one there is nobody to write to.
    no_team = await client.post(portal, json={"subject": "Question", "body": "Hello"}, headers=patient)
    assert no_team.status_code == 409, no_team.text
    team = await client.post(
        f"/api/v1/patients/{patient_id}/care-team",
        json={"members": [{"user_id": chw_id, "role": "chw"}, {"name": "Aunt May", "role": "caregiver"}]},
        headers=doc,
    )
    assert team.status_code == 201, team.text
    foreign = await client.post(
        portal, json={"patient_id": other_patient, "subject": "Q", "body": "Hi"}, headers=patient
    )
    assert foreign.status_code == 400  # a patient never names a patient: the portal knows who they are
    asked = await client.post(portal, json={"subject": "Question", "body": "Hello"}, headers=patient)
    assert asked.status_code == 201, asked.text
    people = {(p["name"], p["is_patient"]) for p in asked.json()["participants"]}
    assert people == {("chw_a", False), ("Ada Lovelace", True)}
    assert await _unread(client, chw, asked.json()["id"]) == 1
    assert [t["id"] for t in (await client.get("/api/v1/threads", headers=doc)).json()["items"]] == [
        shared["id"],
        not_theirs["id"],
        staff_only["id"],
    ]
