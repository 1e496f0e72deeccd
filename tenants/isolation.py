"""Tenant isolation, enforced twice.

1. In the ORM: every SELECT, UPDATE and DELETE that touches a :class:`TenantOwned` model gets
   ``tenant_id = <current tenant>`` added (``with_loader_criteria``, aliases included); new rows get
   the current tenant and may not name another. Without a tenant context, :class:`NoTenantContext`.
2. In PostgreSQL: each transaction starts with ``set_config('app.tenant_id', ..., true)`` (transaction
   local, so a pooled connection never carries it into the next request) and the row-level security
   policies installed by the migrations reject other tenants' rows, also for raw SQL.

The only way around both is :func:`tenants.context.network_scope`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import BindParameter, ForeignKey, Row, Table, bindparam, event, insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    SessionTransaction,
    declared_attr,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.schema import sort_tables
from sqlalchemy.sql import visitors
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from tenants.context import NoTenantContext, get_tenant_id, network_scope_reason, tenant_context

_BEGUN_TENANT = "carehub.tenant_at_begin"
_BEGUN_SCOPE = "carehub.network_scope_at_begin"


class TenantOwned:
    """Mixin for rows that belong to exactly one tenant."""

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(
            ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=False, info={_OWNED: True}
        )


# Marks the tenant column of a TenantOwned table, so that a table is known as tenant-owned from itself.
_OWNED = "carehub.tenant_owned"


def _owned(table: Table) -> bool:
    column = table.c.get("tenant_id")
    return column is not None and column.info.get(_OWNED, False)


def _touches_tenant_data(statement: Executable) -> bool:
    """Whether a tenant-owned table appears anywhere in the statement (columns, FROM, joins, subqueries)."""
    return any(
        isinstance(element, Table) and _owned(element) for element in visitors.iterate(cast(ClauseElement, statement))
    )


def _check_same_scope(session: Session) -> None:
    """The tenant (and network scope) a transaction began with is the one it keeps (RLS was set for it)."""
    if _BEGUN_TENANT not in session.info:
        return
    begun = (session.info[_BEGUN_TENANT], session.info.get(_BEGUN_SCOPE) is not None)
    if begun != (get_tenant_id(), network_scope_reason() is not None):
        raise NoTenantContext("tenant context or network scope changed inside a transaction; open a new session")


def _check_insert_rows(state: ORMExecuteState, tenant_id: uuid.UUID) -> None:
    """ORM ``insert()`` statements must name the current tenant on every row."""
    rows: list[Mapping[str, Any]] = []
    values = getattr(state.statement, "_values", None)
    if values:
        rows.append({getattr(k, "key", k): v for k, v in values.items()})
    params = state.parameters
    if isinstance(params, Mapping):
        rows.append(params)
    elif params:
        rows.extend(params)
    if not rows:
        raise NoTenantContext("insert into a tenant-owned table without rows to check")
    for row in rows:
        value = row.get("tenant_id")
        value = getattr(value, "value", value)  # a bound parameter
        if value != tenant_id:
            raise NoTenantContext("insert into a tenant-owned table must name the current tenant on every row")


@event.listens_for(Session, "do_orm_execute")
def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete or state.is_insert):
        return
    _check_same_scope(state.session)
    tenant_id = _filtering_tenant(state.statement)
    if tenant_id is None:
        return
    if state.is_insert:
        table = getattr(state.statement, "table", None)
        if _owned(table) if isinstance(table, Table) else _touches_tenant_data(state.statement):
            _check_insert_rows(state, tenant_id)
        return
    if not state.is_orm_statement:
        # A Core statement on Table objects: the ORM criteria cannot reach it, so it is refused.
        if _touches_tenant_data(state.statement):
            raise NoTenantContext("Core statements on tenant-owned tables are refused; use the ORM entity")
        return
    # Added to every statement: the criteria apply wherever a tenant-owned entity appears (selected,
    # joined, in select_from or a subquery), and cost nothing where none does. The tenant comes as a named
    # parameter of the execution, the same for every statement.
    statement = state.statement
    with_criteria = _PREBUILT.get(id(statement))
    state.statement = statement.options(_TENANT_CRITERIA) if with_criteria is None else with_criteria[1]
    params = state.parameters
    if not params:
        state.parameters = {_TENANT_PARAM: tenant_id}
    elif isinstance(params, Mapping):
        state.parameters = {**params, _TENANT_PARAM: tenant_id}
    else:
        state.parameters = [{**p, _TENANT_PARAM: tenant_id} for p in params]


def _filtering_tenant(statement: Executable) -> uuid.UUID | None:
    """The tenant whose criteria a statement gets: none inside a network scope, nor for a statement that touches
    no tenant-owned table without a tenant context; one that touches such a table without a context is refused."""
    if network_scope_reason() is not None:
        return None
    tenant_id = get_tenant_id()
    if tenant_id is None and _touches_tenant_data(statement):
        raise NoTenantContext("query on a tenant-owned table without a tenant context")
    return tenant_id


_TENANT_PARAM = "carehub_tenant_id"
# The tenant is a named parameter rather than a value captured by the lambda: a captured value is a parameter
# that SQLAlchemy matches to its compiled form at every execution, through the annotated copies of the criteria
# (for a record by id, that matching cost more than the rest of building its parameters by ten).
_TENANT_BIND: BindParameter[uuid.UUID] = bindparam(_TENANT_PARAM)
_TENANT_CRITERIA = with_loader_criteria(
    TenantOwned, lambda cls: cls.tenant_id == _TENANT_BIND, include_aliases=True, track_closure_variables=False
)
_PREBUILT: dict[int, tuple[Executable, Executable]] = {}

Prebuilt = TypeVar("Prebuilt", bound=Executable)


def prebuilt(statement: Prebuilt) -> Prebuilt:
    """Register a statement built once at import and run with bound parameters on every request (a record
    by id, the caller's re-read): its tenant-filtered form is built once too, so that SQLAlchemy's cache key,
    which it memoizes per statement object, is computed once instead of at every execution."""
    _PREBUILT[id(statement)] = (statement, statement.options(_TENANT_CRITERIA))
    return statement


async def plain_rows(session: AsyncSession, statement: Executable, params: Mapping[str, Any]) -> Sequence[Row[Any]]:
    """The rows of a :func:`prebuilt` ORM statement as plain rows, without the ORM's loading (no objects, no
    identity map): for a read whose columns are all it needs, such as the caller's re-read on every request.

    The statement gets what the session would give it: the tenant criteria (or a refusal without a tenant
    context), the same transaction, pending changes and appended rows written first.
    """
    filtered = _PREBUILT.get(id(statement))
    if filtered is None:
        raise ValueError("plain_rows runs prebuilt statements only (see prebuilt())")
    sync = session.sync_session
    if sync.new or sync.deleted or sync.dirty:
        await session.flush()
    if _PENDING in sync.info:
        await session.run_sync(_write_pending)
    connection = await session.connection()
    _check_same_scope(sync)
    values = dict(params)
    tenant_id = _filtering_tenant(statement)
    if tenant_id is not None:
        statement, values[_TENANT_PARAM] = filtered[1], tenant_id
    return (await connection.execute(statement, values)).all()


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TenantOwned):
            obj.tenant_id = _owner(type(obj), obj.tenant_id)


@event.listens_for(Session, "after_begin")
def _set_database_tenant(session: Session, _transaction: Any, connection: Any) -> None:
    tenant_id = get_tenant_id()
    scope = network_scope_reason()
    session.info[_BEGUN_TENANT] = tenant_id
    session.info[_BEGUN_SCOPE] = scope
    if connection.dialect.name != "postgresql":
        return
    connection.execute(_SET_TENANT, {"tenant": str(tenant_id) if tenant_id else "", "scope": "on" if scope else ""})


_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant, true), set_config('app.network_scope', :scope, true)")


@event.listens_for(Session, "after_transaction_end")
def _forget_tenant(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_BEGUN_TENANT, None)
        session.info.pop(_BEGUN_SCOPE, None)


def append(session: AsyncSession, model: type[Any], row: dict[str, Any], *, tenant_id: uuid.UUID | None = None) -> None:
    """Add a new row to the session's transaction as a plain row rather than an ORM object, for rows that are
    written and not changed in the request (audit and outbox events, a new record): the unit of work costs more than
    the rest of a read.

    A tenant-owned row belongs to ``tenant_id`` if given, else to the current tenant, with the rules of every new
    row (another tenant only inside a network scope; none without a tenant context). The transaction's pending rows
    are written per table, parents before the tables whose foreign keys refer to them, one statement each, before
    the session's next statement (which may read them back) or at commit; a rollback discards them with the
    change. Inside a savepoint the unit of work takes the row, so that rolling the savepoint back removes it.
    """
    if issubclass(model, TenantOwned):
        row["tenant_id"] = _owner(model, tenant_id)
    sync = session.sync_session
    if sync.get_nested_transaction() is not None:
        sync.add(model(**row))
        return
    if not sync.in_transaction():
        sync.begin()  # what session.add() would do: the row belongs to the transaction that begins here
    pending: dict[Table, list[dict[str, Any]]] = sync.info.setdefault(_PENDING, {})
    pending.setdefault(cast(Table, model.__table__), []).append(row)


async def write_pending(session: AsyncSession) -> None:
    """Write the rows appended so far now: before a savepoint that may roll back, so that they are not written
    inside it (by its first statement) and lost with it."""
    if _PENDING in session.sync_session.info:
        await session.run_sync(_write_pending)


_PENDING = "carehub.pending_rows"


def _owner(model: type[Any], tenant_id: uuid.UUID | None) -> uuid.UUID:
    """The tenant a new row of ``model`` is written in: ``tenant_id`` if named (another than the current one
    only inside a network scope), else the current tenant; none without a tenant context."""
    current = get_tenant_id()
    if tenant_id is None or tenant_id == current:
        if current is None:
            raise NoTenantContext(f"cannot write {model.__name__} without a tenant context")
        return current
    if network_scope_reason() is None:
        raise NoTenantContext(f"{model.__name__} belongs to another tenant than the current context")
    return tenant_id


def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        connection = session.connection()
        # Parents before the rows that refer to them, whatever order the tables were first appended to (a batch
        # that appends a link before its patient's row, after another patient's link, is still written right).
        for table in sort_tables(pending):
            rows = pending[table]
            statement = _INSERTS.get(table)
            if statement is None:
                statement = _INSERTS[table] = insert(table)
            connection.execute(statement, rows)


_INSERTS: dict[Table, Any] = {}


@event.listens_for(Session, "do_orm_execute")
def _write_before_statement(state: ORMExecuteState) -> None:
    if _PENDING in state.session.info:
        _write_pending(state.session)


@event.listens_for(Session, "before_flush")
def _write_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Appended rows before the unit of work's: an ORM object may refer to one (a feed's encounter to the patient
    appended just before it)."""
    if _PENDING in session.info:
        _write_pending(session)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    _write_pending(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ends without commit (rolled back, closed) takes its unwritten rows with it."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


@asynccontextmanager
async def other_tenant_session(session: AsyncSession, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
    """A session acting in ``tenant_id`` inside the block, for code that must write in another tenant while
    ``session`` (in the current tenant) has a transaction open, such as a job handler writing follow-ups at the
    tenant the patient's consent names.

    On PostgreSQL it is a new session with its own transaction, committed at the end of the block (row-level
    security is set for ``tenant_id`` on its connection). On SQLite, which has one writer at a time, it joins
    ``session``'s transaction through a savepoint on the same connection, so that both commit or roll back together
    (SQLite has no row-level security to reset; the ORM filter applies to ``tenant_id`` as everywhere).
    """
    bind = session.bind
    assert bind is not None
    with tenant_context(tenant_id):
        if bind.dialect.name == "sqlite":
            connection = await session.connection()
            async with AsyncSession(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            ) as other:
                yield other
                await other.commit()
        else:
            async with AsyncSession(bind=bind, expire_on_commit=False) as other, other.begin():
                yield other
