"""The floor carehub is measured against: a bare Litestar app that answers the benchmarked requests with the
same SQL statements in the same transactions (``bench/floor_sql.py``) and nothing else.

It verifies the bearer token (carehub's own token check), runs the statements, and answers JSON of the same
shape. Two variants: ``core`` (SQLAlchemy Core ``text()`` over asyncpg, the engine options carehub uses)
and ``asyncpg`` (raw asyncpg, its own pool). It runs under the same server with the same options as
``carehub serve``.

    python -m bench.floor --variant core|asyncpg --port 8001   (CAREHUB_DATABASE_URL as for carehub)
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg
import msgspec
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.hub import engine_options
from api.tokens import TokenService
from bench import floor_sql as q
from core.db import make_engine
from core.settings import Settings, load_settings

Row = dict[str, Any]


class Tx(Protocol):
    async def rows(self, sql: str, *args: Any) -> list[Row]: ...
    async def run(self, sql: str, *args: Any) -> None: ...
    async def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...


class CoreTx:
    """Statements through SQLAlchemy Core ``text()`` on one connection of carehub's engine."""

    _texts: dict[str, Any] = {}

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @classmethod
    def _text(cls, sql: str) -> Any:
        found = cls._texts.get(sql)
        if found is None:
            found = cls._texts[sql] = text(re.sub(r"\$(\d+)", r":p\1", sql))
        return found

    async def rows(self, sql: str, *args: Any) -> list[Row]:
        result = await self._conn.execute(self._text(sql), {f"p{n}": v for n, v in enumerate(args, 1)})
        return [dict(r._mapping) for r in result]

    async def run(self, sql: str, *args: Any) -> None:
        await self._conn.execute(self._text(sql), {f"p{n}": v for n, v in enumerate(args, 1)})

    async def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._conn.execute(self._text(sql), [{f"p{n}": v for n, v in enumerate(r, 1)} for r in rows])


class PgTx:
    """Statements through raw asyncpg (prepared and cached by asyncpg)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def rows(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]

    async def run(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._conn.executemany(sql, rows)


class Floor:
    def __init__(self, settings: Settings, variant: str) -> None:
        self.settings, self.variant = settings, variant
        self.tokens = TokenService(settings)
        self.engine: AsyncEngine | None = None
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self.variant == "core":
            self.engine = make_engine(self.settings.database_url, **engine_options(self.settings))
            return
        options = engine_options(self.settings)
        dsn = self.settings.database_url.replace("postgresql+asyncpg", "postgresql")
        size = options["pool_size"]
        self.pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size * 2, server_settings=options["connect_args"]["server_settings"]
        )

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
        if self.pool is not None:
            await self.pool.close()

    @asynccontextmanager
    async def tx(self, request: Request[Any, Any, Any]) -> AsyncIterator[tuple[Tx, Row]]:
        """One transaction in the caller's tenant, with the caller re-read: what every carehub request does."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise NotAuthorizedException("a bearer token is required")
        claims = self.tokens.verify(header[7:])
        if self.engine is not None:
            async with self.engine.connect() as conn, conn.begin():
                db: Tx = CoreTx(conn)
                yield db, await _caller(db, claims.user_id, claims.tenant_id)
        else:
            assert self.pool is not None
            async with self.pool.acquire() as raw, raw.transaction():
                db = PgTx(raw)
                yield db, await _caller(db, claims.user_id, claims.tenant_id)


async def _caller(db: Tx, user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> Row:
    await db.rows(q.SET_TENANT, str(tenant_id) if tenant_id else "", "")
    found = await db.rows(q.PRINCIPAL, tenant_id, user_id)
    if not found or not found[0]["is_active"]:
        raise NotAuthorizedException("the token's membership was removed")
    caller = found[0]
    roles = caller["roles"]
    caller["roles"] = json.loads(roles) if isinstance(roles, str) else roles
    return caller


async def _audit(
    db: Tx, caller: Row, action: str, kind: str, items: Sequence[tuple[Any, Any]], detail: Any = None
) -> None:
    """The request's audit events, one row per (patient id, resource id), sent together."""
    if not items:
        return
    now, roles, detail_json = datetime.now(UTC), json.dumps(caller["roles"]), json.dumps(detail)
    user, tenant = caller["id"], caller["tenant_id"]
    rows = [
        (now, user, roles, patient, action, kind, str(resource), "success", None, detail_json, uuid.uuid4(), tenant)
        for patient, resource in items
    ]
    await db.many(q.AUDIT_INSERT, rows)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _patient_out(row: Row, identifiers: list[Row]) -> Row:
    keys = ("id", "mrn", "given_name", "family_name", "birth_date", "sex", "phone", "email")
    out = {k: row[k] for k in keys}
    out.update(address=_json(row["address"]), language=row["language"], active=row["active"])
    out["identifiers"] = [{"system": i["system"], "value": i["value"]} for i in identifiers]
    out.update(created_at=row["created_at"], updated_at=row["updated_at"])
    return out


def _floor(request: Request[Any, Any, Any]) -> Floor:
    floor: Floor = request.app.state.floor
    return floor


@get("/healthz")
async def healthz() -> Row:
    return {"status": "ok"}


@get("/api/v1/patients/{patient_id:uuid}")
async def read_patient(request: Request[Any, Any, Any], patient_id: uuid.UUID) -> Row:
    async with _floor(request).tx(request) as (db, caller):
        found = await db.rows(q.PATIENT_WITH_IDENTIFIERS, patient_id, caller["tenant_id"])
        if not found:
            raise NotFoundException("patient not found")
        identifiers = [
            {"system": row["identifier_system"], "value": row["identifier_value"]}
            for row in found
            if row["identifier_system"] is not None
        ]
        await _audit(db, caller, "patient.read", "Patient", [(patient_id, patient_id)])
    return _patient_out(found[0], identifiers)


@get("/api/v1/patients")
async def list_patients(request: Request[Any, Any, Any], limit: int = 50, offset: int = 0) -> Row:
    async with _floor(request).tx(request) as (db, caller):
        rows = await db.rows(q.PATIENT_PAGE, caller["tenant_id"], limit, offset)
        ids = [r["id"] for r in rows]
        identifiers = await db.rows(q.IDENTIFIERS_OF, ids, caller["tenant_id"]) if ids else []
        await _audit(db, caller, "patient.search", "Patient", [(i, i) for i in ids])
    by_patient: dict[Any, list[Row]] = {}
    for i in identifiers:
        by_patient.setdefault(i["patient_id"], []).append(i)
    items = [_patient_out(r, by_patient.get(r["id"], [])) for r in rows]
    page = {"limit": limit, "offset": offset, "next_offset": offset + limit if len(rows) == limit else None}
    return {"items": items, "page": page}


class NewPatient(msgspec.Struct, forbid_unknown_fields=True):
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str


@post("/api/v1/patients")
async def create_patient(request: Request[Any, Any, Any]) -> Row:
    data = msgspec.json.decode(await request.body(), type=NewPatient)
    async with _floor(request).tx(request) as (db, caller):
        tenant_id = caller["tenant_id"]
        if await db.rows(q.PATIENT_BY_MRN, data.mrn, tenant_id):
            raise HTTPException(status_code=409, detail="a patient with this MRN exists")
        patient_id, now = uuid.uuid4(), datetime.now(UTC)
        row = [data.mrn, data.given_name, data.family_name, data.birth_date, data.sex, None, None, "null", None]
        await db.run(q.PATIENT_INSERT, *row, True, None, patient_id, now, now, tenant_id)
        await _audit(db, caller, "patient.create", "Patient", [(patient_id, patient_id)])
        payload = json.dumps({"patient_id": str(patient_id)})
        await db.run(q.OUTBOX_INSERT, "patient.created", patient_id, payload, now, None, 0, uuid.uuid4(), tenant_id)
        network = (await db.rows(q.NETWORK_OF_TENANT, tenant_id))[0]
        person_id = uuid.uuid4()
        await db.run(q.PERSON_INSERT, network["id"], now, person_id)
        keys = [data.given_name.lower(), data.family_name.lower(), data.birth_date, data.sex, None, False]
        await db.run(q.LINK_INSERT, tenant_id, patient_id, person_id, "new", None, now, *keys, uuid.uuid4())
    out = dict(zip(("mrn", "given_name", "family_name", "birth_date", "sex", "phone", "email"), row, strict=False))
    out.update(id=patient_id, address=None, language=None, identifiers=[], active=True)
    out.update(created_at=now, updated_at=now)
    return out


@get("/api/v1/tasks")
async def my_tasks(request: Request[Any, Any, Any], queue: str = "mine", limit: int = 50, offset: int = 0) -> Row:
    async with _floor(request).tx(request) as (db, caller):
        rows = await db.rows(q.TASKS_MINE, caller["tenant_id"], caller["id"], limit, offset)
        await _audit(db, caller, "task.search", "Task", [(r["patient_id"], r["id"]) for r in rows])
    items = []
    for r in rows:
        item = {k: v for k, v in r.items() if k not in ("tenant_id", "given_name", "family_name")}
        item["patient_name"] = f"{r['given_name']} {r['family_name']}"
        items.append(item)
    page = {"limit": limit, "offset": offset, "next_offset": offset + limit if len(rows) == limit else None}
    return {"items": items, "page": page}


@get("/api/v1/care-plans/{plan_id:uuid}")
async def read_care_plan(request: Request[Any, Any, Any], plan_id: uuid.UUID) -> Row:
    async with _floor(request).tx(request) as (db, caller):
        found = await db.rows(q.CARE_PLAN, plan_id, caller["tenant_id"])
        if not found:
            raise NotFoundException("care plan not found")
        goals = await db.rows(q.CARE_PLAN_GOALS, [plan_id], caller["tenant_id"])
        activities = await db.rows(q.CARE_PLAN_ACTIVITIES, [plan_id], caller["tenant_id"])
        await _audit(db, caller, "care_plan.read", "CarePlan", [(found[0]["patient_id"], plan_id)])
    plan = {k: v for k, v in found[0].items() if k != "tenant_id"}
    plan["structured"] = _json(plan["structured"])
    plan["goals"] = [{k: v for k, v in g.items() if k != "tenant_id"} for g in goals]
    plan["activities"] = [{k: v for k, v in a.items() if k != "tenant_id"} for a in activities]
    return plan


class NewMessage(msgspec.Struct, forbid_unknown_fields=True):
    body: str


@post("/api/v1/threads/{thread_id:uuid}/messages")
async def send_message(request: Request[Any, Any, Any], thread_id: uuid.UUID) -> Row:
    data = msgspec.json.decode(await request.body(), type=NewMessage)
    async with _floor(request).tx(request) as (db, caller):
        tenant_id, user_id = caller["tenant_id"], caller["id"]
        found = await db.rows(q.THREAD, thread_id, tenant_id)
        participants = await db.rows(q.THREAD_PARTICIPANTS, tenant_id, thread_id)
        mine = next((p for p in participants if p["user_id"] == user_id), None)
        if not found or mine is None:
            raise NotFoundException("thread not found")
        message_id, now = uuid.uuid4(), datetime.now(UTC)
        await db.run(
            q.MESSAGE_INSERT, thread_id, message_id, 1, mine["id"], data.body, False, now, message_id, tenant_id
        )
        await db.run(q.THREAD_TOUCH, now, thread_id)
        others = [p["user_id"] for p in participants if p["user_id"] not in (None, user_id) and not p["is_patient"]]
        recipients = [r["user_id"] for r in await db.rows(q.ACTIVE_STAFF, tenant_id, others)]
        patient_id = found[0]["patient_id"]
        detail = {"thread_id": str(thread_id), "attachments": 0}
        await _audit(db, caller, "message.send", "Message", [(patient_id, message_id)], detail)
        payload = {
            "thread_id": str(thread_id),
            "message_id": str(message_id),
            "patient_id": str(patient_id),
            "author_participant_id": str(mine["id"]),
            "recipient_user_ids": [str(r) for r in recipients],
            "patient_is_recipient": False,
        }
        await db.run(
            q.OUTBOX_INSERT, "message.sent", patient_id, json.dumps(payload), now, None, 0, uuid.uuid4(), tenant_id
        )
        await db.rows(q.MESSAGE_ATTACHMENTS, tenant_id, message_id)
        await db.rows(q.MESSAGE_RECEIPTS, tenant_id, message_id)
        names = {r["id"]: r["full_name"] for r in await db.rows(q.USER_NAMES, tenant_id, [*recipients, user_id])}
    author = {"participant_id": mine["id"], "user_id": user_id, "name": names.get(user_id), "is_patient": False}
    return {
        "id": message_id,
        "original_id": message_id,
        "thread_id": thread_id,
        "version": 1,
        "author": author,
        "body": data.body,
        "attachments": [],
        "sent_at": now,
        "read_by": [],
    }


def create_app(settings: Settings, variant: str) -> Litestar:
    floor = Floor(settings, variant)
    return Litestar(
        route_handlers=[healthz, read_patient, list_patients, create_patient, my_tasks, read_care_plan, send_message],
        on_startup=[floor.start],
        on_shutdown=[floor.stop],
        state=State({"floor": floor}),
        openapi_config=None,
    )


def main() -> None:
    from api.cli import serve

    parser = argparse.ArgumentParser(description="the benchmark floor app")
    parser.add_argument("--variant", choices=("core", "asyncpg"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings()
    serve(create_app(settings, args.variant), settings, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
