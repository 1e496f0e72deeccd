"""Loading one tenant record by id for a request: absent (or another tenant's) is a 404, and audited.

:class:`Records` describes one record type once (its model, the resource type its audit events carry, the
permission object its checks name, its not-found text and its output shape), so that every service loads,
audits and shapes it the same way, as a repository service's ``get()`` and ``to_schema()`` do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import ARRAY, Select, any_, bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from core import audit
from core.db import IdMixin
from core.errors import NotFound
from core.principal import Principal
from tenants.isolation import prebuilt

Record = TypeVar("Record")
Model = TypeVar("Model", bound=IdMixin)
Out = TypeVar("Out")


async def get_or_404(
    session: AsyncSession,
    principal: Principal,
    model: type[Record],
    record_id: uuid.UUID,
    *,
    action: str,
    resource_type: str,
    detail: str,
    for_update: bool = False,
) -> Record:
    """The record of the caller's tenant with this id; otherwise an audited ``not_found`` and :class:`NotFound`.

    The session's tenant filter makes another tenant's record absent, so both answers are the same. With
    ``for_update`` the row is locked until the transaction ends (PostgreSQL), so that a read-then-write such as
    "the first acknowledgement stands" holds under concurrent requests.
    """
    record = await load(session, model, record_id, for_update=for_update)
    if record is None:
        raise not_found(session, principal, record_id, action=action, resource_type=resource_type, detail=detail)
    return record


_BY_ID: dict[type[Any], Any] = {}


def _by_id(model: type[Any]) -> Any:
    """The statement that reads one record by id, built once per model (building a statement per request costs
    more than running it). The record's one eagerly loaded collection comes in the same query (one round trip
    where ``selectin`` makes two); several are loaded by :func:`fill` (joined, they would multiply each other's
    rows)."""
    statement = _BY_ID.get(model)
    if statement is None:
        eager = _eager(model)
        if len(eager) == 1:
            statement = select(model).options(joinedload(getattr(model, eager[0].key)))
        else:
            statement = many(model)
        statement = _BY_ID[model] = prebuilt(statement.where(model.id == bindparam("record_id")))
    return statement


async def load(session: AsyncSession, model: type[Any], record_id: uuid.UUID, *, for_update: bool = False) -> Any:
    """The record with this id (``None`` if absent or another tenant's), with its eager collections.

    A locked read keeps the ORM's second query for the collections: PostgreSQL cannot lock the nullable side of
    an outer join.
    """
    if for_update:
        return await session.get(model, record_id, with_for_update=True, populate_existing=True)
    result = await session.execute(_by_id(model), {"record_id": record_id})
    record = result.unique().scalar_one_or_none()
    if record is not None and len(_eager(model)) > 1:
        await fill(session, model, [record])
    return record


_EAGER: dict[type[Any], list[Any]] = {}


def _eager(model: type[Any]) -> list[Any]:
    """The model's eagerly loaded (``selectin``) collections."""
    found = _EAGER.get(model)
    if found is None:
        found = _EAGER[model] = [r for r in sa_inspect(model).relationships if r.lazy == "selectin"]
    return found


_WITHOUT_EAGER: dict[type[Any], tuple[Any, ...]] = {}


def many(model: type[Any]) -> Select[Any]:
    """``select(model)`` for a list of records whose eager collections :func:`fill` loads afterwards (with one
    statement built once per collection, where the ORM's ``selectin`` builds its statement at every load)."""
    options = _WITHOUT_EAGER.get(model)
    if options is None:
        options = _WITHOUT_EAGER[model] = tuple(lazyload(getattr(model, r.key)) for r in _eager(model))
    return select(model).options(*options)


_CHILDREN: dict[tuple[Any, str], tuple[Any, Any]] = {}


def _children_of(relationship: Any, dialect: str) -> tuple[Any, Any]:
    """The statement reading a collection's rows for a list of parent ids (``ids``), and the child column that
    names the parent. PostgreSQL takes the ids as one array parameter (one statement for any number of parents);
    SQLite as an expanding ``IN``."""
    found = _CHILDREN.get((relationship, dialect))
    if found is None:
        (parent_id, child_fk), *_ = [(p, c) for p, c in relationship.local_remote_pairs if p.key == "id"]
        child = relationship.mapper.class_
        column = getattr(child, child_fk.key)
        if dialect == "postgresql":
            condition = column == any_(bindparam("ids", type_=ARRAY(parent_id.type)))
        else:
            condition = column.in_(bindparam("ids", expanding=True))
        statement = select(child).where(condition).order_by(*(relationship.order_by or ()))
        found = _CHILDREN[(relationship, dialect)] = (prebuilt(statement), child_fk.key)
    return found


async def fill(session: AsyncSession, model: type[Any], records: list[Any]) -> None:
    """Load the eager collections of ``records`` (read with :func:`many`): one query per collection."""
    if not records:
        return
    dialect = session.bind.dialect.name if session.bind is not None else ""
    ids = [r.id for r in records]
    for relationship in _eager(model):
        statement, parent_key = _children_of(relationship, dialect)
        by_parent: dict[Any, list[Any]] = {i: [] for i in ids}
        for child in (await session.scalars(statement, {"ids": ids})).all():
            by_parent[getattr(child, parent_key)].append(child)
        for record in records:
            set_committed_value(record, relationship.key, by_parent[record.id])


def not_found(
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
    *,
    action: str,
    resource_type: str,
    detail: str,
    patient_id: uuid.UUID | None = None,
) -> NotFound:
    """Note the audited ``not_found`` of ``action`` on ``record_id`` and give the 404 to raise."""
    audit.record_failure(
        session,
        principal.actor,
        action=action,
        resource_type=resource_type,
        resource_id=record_id,
        patient_id=patient_id,
        outcome="not_found",
    )
    return NotFound(detail)


def _own_patient(record: Any) -> uuid.UUID | None:
    patient_id: uuid.UUID | None = record.patient_id
    return patient_id


@dataclass(frozen=True, slots=True)
class Records(Generic[Model, Out]):
    """One record type as services see it.

    ``permission`` is the Casbin object of its checks (``principal.require(permission, act)``);
    ``patient_of`` says which patient an audit event about a record concerns (by default its ``patient_id``).
    ``shape`` is left out where the output needs the database (a domain's own async ``to_out``). A record type
    whose reads concern no patient (a tenant's templates) may leave its 404s unaudited (``audited=False``).
    """

    model: type[Model]
    resource_type: str
    permission: str
    not_found: str
    shape: Callable[[Model], Out] | None = None
    patient_of: Callable[[Model], uuid.UUID | None] = field(default=_own_patient)
    audited: bool = True

    async def get(
        self,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        action: str,
        *,
        need: str | None = None,
        for_update: bool = False,
    ) -> Model:
        """The caller's tenant's record with this id, after checking ``need`` on the permission object (if
        given); an absent record is an audited 404 (as ``action``)."""
        if need is not None:
            principal.require(self.permission, need)
        if not self.audited:
            record = await load(session, self.model, record_id, for_update=for_update)
            if record is None:
                raise self.missing()
            return record
        return await get_or_404(
            session,
            principal,
            self.model,
            record_id,
            action=action,
            resource_type=self.resource_type,
            detail=self.not_found,
            for_update=for_update,
        )

    def audit(self, session: AsyncSession, principal: Principal, record: Model, action: str, **detail: Any) -> None:
        """Record a successful ``action`` on ``record`` in the request's transaction."""
        self.audit_ids(session, principal, action, record.id, self.patient_of(record), **detail)

    def audit_ids(
        self,
        session: AsyncSession,
        principal: Principal,
        action: str,
        record_id: uuid.UUID,
        patient_id: uuid.UUID | None,
        **detail: Any,
    ) -> None:
        """:meth:`audit` for a record known by its ids (a new record's row, a read's plain rows)."""
        audit.record(
            session,
            principal.actor,
            action=action,
            resource_type=self.resource_type,
            resource_id=record_id,
            patient_id=patient_id,
            detail=detail or None,
        )

    def to_out(self, record: Model) -> Out:
        if self.shape is None:
            raise TypeError(f"{self.resource_type} records are shaped by their service")
        return self.shape(record)

    def refuse(
        self,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        action: str,
        *,
        patient_id: uuid.UUID | None = None,
    ) -> NotFound:
        """The audited 404 of a record the caller may not see although it exists (or that is absent)."""
        return not_found(
            session,
            principal,
            record_id,
            action=action,
            resource_type=self.resource_type,
            detail=self.not_found,
            patient_id=patient_id,
        )

    def missing(self) -> NotFound:
        """The bare 404 of this record type, for a lookup the caller audits itself (or not at all)."""
        return NotFound(self.not_found)
