"""Access transparency for privacy officers (the access report) and for patients (the portal access log).

Both read the audit events written by :mod:`core.consent.access`: every cross-tenant access decision (allowed or
refused) and every break-the-glass opening. A tenant's report reads only its own audit log: inbound rows (other
tenants' users asking for its records) and outbound rows (its own users asking for other tenants' records).

The patient's access log covers every record of the person in the network: for each linked record, the inbound
events are read in *that* tenant's context (its own session, its row-level security), never network-wide, so the
log shows no more than each tenant's own log holds about this patient.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import AuditEvent
from core.consent import decision
from core.consent.access import ACCESS_ACTIONS, BREAK_GLASS_OPEN
from core.consent.categories import BREAK_GLASS_PURPOSE, CATEGORIES
from core.consent.network import tenant_names
from core.db import utcnow
from core.errors import InvalidInput
from core.inputs import to_utc
from core.principal import Principal
from tenants.models import Tenant, User

DIRECTIONS = ("inbound", "outbound")
REPORT_OUTCOMES = ("success", "denied")
BASES = (
    decision.CONSENT,
    decision.NETWORK_DEFAULT,
    decision.BREAK_THE_GLASS,
    decision.CONSENT_DENIED,
    decision.NO_CONSENT,
    decision.ROLE,
)


# The CSV export is built in memory: at most this many rows (newest first); the response says when it was cut.
CSV_ROW_CAP = 50_000
CSV_COLUMNS = (
    "id",
    "at",
    "action",
    "direction",
    "outcome",
    "basis",
    "flagged",
    "category",
    "purpose",
    "patient_id",
    "user_id",
    "user_name",
    "requesting_tenant_id",
    "requesting_tenant_name",
    "source_tenant_id",
    "source_tenant_name",
    "consent_id",
    "break_glass_id",
    "reason",
    "items",
)


# A spreadsheet runs a cell that starts with one of these as a formula: such cells are exported behind a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ReportFilters:
    """The access report's filters, checked (times in UTC; every value one of its vocabulary)."""

    since: datetime | None = None
    until: datetime | None = None
    direction: str | None = None
    outcome: str | None = None
    basis: str | None = None
    patient_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    requesting_tenant_id: uuid.UUID | None = None
    category: str | None = None

    def as_detail(self) -> dict[str, str]:
        """The filters in use, for the audit event of reading the report."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else str(value)
            for name, value in asdict(self).items()
            if value is not None
        }


def _one_of(value: str | None, allowed: Sequence[str], field: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidInput(f"one of: {', '.join(allowed)}", field=field, source="query")
    return value


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("not a valid id (a UUID)", field=field, source="query") from None


def filters(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: str | None = None,
    outcome: str | None = None,
    basis: str | None = None,
    patient_id: str | None = None,
    user_id: str | None = None,
    requesting_tenant_id: str | None = None,
    category: str | None = None,
) -> ReportFilters:
    """Check the report's query values (a bad one is refused with 422 naming it)."""
    start = to_utc(since, "since", "query") if since is not None else None
    end = to_utc(until, "until", "query") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise InvalidInput("until must be after since", field="until", source="query")
    return ReportFilters(
        since=start,
        until=end,
        direction=_one_of(direction, DIRECTIONS, "direction"),
        outcome=_one_of(outcome, REPORT_OUTCOMES, "outcome"),
        basis=_one_of(basis, BASES, "basis"),
        patient_id=_uuid(patient_id, "patient_id"),
        user_id=_uuid(user_id, "user_id"),
        requesting_tenant_id=_uuid(requesting_tenant_id, "requesting_tenant_id"),
        category=_one_of(category, CATEGORIES, "category"),
    )


class Party(msgspec.Struct):
    """A user or a tenant named in a row (the name as the audit event recorded it, else the current one)."""

    id: uuid.UUID | None
    name: str | None


class AccessRow(msgspec.Struct):
    id: uuid.UUID
    at: datetime
    # network.access | break_glass.open
    action: str
    # inbound: another tenant's user asked for our record; outbound: our user asked for another tenant's record
    direction: str | None
    # success | denied
    outcome: str
    # consent | network_default | break_the_glass | consent_denied | no_consent | role
    basis: str | None
    category: str | None
    purpose: str | None
    # This tenant's record of the person.
    patient_id: uuid.UUID | None
    user: Party
    # Who asked (inbound: the other tenant; outbound: this tenant).
    requesting_tenant: Party | None
    # Whose record was read (inbound: this tenant; outbound: the other tenant, named only when allowed).
    source_tenant: Party | None
    consent_id: uuid.UUID | None
    break_glass_id: uuid.UUID | None
    reason: str | None
    # Items released (0 when refused; none for a break-the-glass opening).
    items: int | None
    # A break-the-glass access or opening: to be reviewed.
    flagged: bool


def detail_text(detail: dict[str, Any], key: str) -> str | None:
    value = detail.get(key)
    return str(value) if value not in (None, "") else None


def detail_id(detail: dict[str, Any], key: str) -> uuid.UUID | None:
    value = detail_text(detail, key)
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _basis(event: AuditEvent) -> str | None:
    detail = event.detail or {}
    if event.action == BREAK_GLASS_OPEN:
        return decision.BREAK_THE_GLASS
    return detail_text(detail, "basis")


def _query(report: ReportFilters) -> Select[AuditEvent]:
    """The current tenant's access events matching ``report``, newest first."""
    detail = AuditEvent.detail
    query = select(AuditEvent).where(AuditEvent.action.in_(ACCESS_ACTIONS))
    if report.since is not None:
        query = query.where(AuditEvent.at >= report.since)
    if report.until is not None:
        query = query.where(AuditEvent.at < report.until)
    if report.direction is not None:
        query = query.where(detail["direction"].as_string() == report.direction)
    if report.outcome is not None:
        query = query.where(AuditEvent.outcome == report.outcome)
    if report.basis == decision.BREAK_THE_GLASS:
        query = query.where(
            or_(AuditEvent.action == BREAK_GLASS_OPEN, detail["basis"].as_string() == decision.BREAK_THE_GLASS)
        )
    elif report.basis is not None:
        query = query.where(AuditEvent.action != BREAK_GLASS_OPEN, detail["basis"].as_string() == report.basis)
    if report.patient_id is not None:
        query = query.where(AuditEvent.patient_id == report.patient_id)
    if report.user_id is not None:
        query = query.where(AuditEvent.actor_user_id == report.user_id)
    if report.requesting_tenant_id is not None:
        query = query.where(detail["requesting_tenant_id"].as_string() == str(report.requesting_tenant_id))
    if report.category is not None:
        query = query.where(detail["category"].as_string() == report.category)
    return query.order_by(AuditEvent.at.desc(), AuditEvent.id)


async def user_names(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Names of users anywhere in the network (accounts are network-level; an access names its user)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.full_name).where(User.id.in_(wanted)))
    return {row[0]: row[1] for row in rows.all()}


async def _rows(session: AsyncSession, tenant_id: uuid.UUID, events: list[AuditEvent]) -> list[AccessRow]:
    details = [e.detail or {} for e in events]
    users = await user_names(session, (e.actor_user_id for e in events))
    tenants = await tenant_names(
        session,
        [tenant_id]
        + [detail_id(d, "requesting_tenant_id") for d in details]
        + [detail_id(d, "source_tenant_id") for d in details],
    )
    rows = []
    for event, detail in zip(events, details, strict=True):
        direction = detail_text(detail, "direction")
        basis = _basis(event)
        own = Party(tenant_id, tenants.get(tenant_id))
        if direction == "inbound":
            requester_id = detail_id(detail, "requesting_tenant_id")
            recorded_name = detail_text(detail, "requesting_tenant_name")
            requesting: Party | None = Party(
                requester_id, recorded_name or (tenants.get(requester_id) if requester_id else None)
            )
            source: Party | None = own
        else:
            requesting = own
            source_id = detail_id(detail, "source_tenant_id")
            source = Party(source_id, tenants.get(source_id)) if source_id is not None else None
        user_name = users.get(event.actor_user_id) if event.actor_user_id else None
        if event.action == BREAK_GLASS_OPEN:
            user_name = user_name or detail_text(detail, "requesting_user")
        rows.append(
            AccessRow(
                id=event.id,
                at=event.at,
                action=event.action,
                direction=direction,
                outcome=event.outcome,
                basis=basis,
                category=detail_text(detail, "category"),
                purpose=detail_text(detail, "purpose")
                or (BREAK_GLASS_PURPOSE if event.action == BREAK_GLASS_OPEN else None),
                patient_id=event.patient_id,
                user=Party(event.actor_user_id, user_name),
                requesting_tenant=requesting,
                source_tenant=source,
                consent_id=detail_id(detail, "consent_id"),
                break_glass_id=detail_id(detail, "break_glass_id"),
                reason=event.reason,
                items=detail.get("items") if isinstance(detail.get("items"), int) else None,
                flagged=basis == decision.BREAK_THE_GLASS,
            )
        )
    return rows


def _read_event(session: AsyncSession, principal: Principal, report: ReportFilters, form: str, rows: int) -> None:
    audit.record(
        session,
        principal.actor,
        action="access_report.read",
        resource_type="AccessReport",
        patient_id=report.patient_id,
        detail={"format": form, "filters": report.as_detail(), "rows": rows},
    )


async def access_report(
    session: AsyncSession, principal: Principal, report: ReportFilters, *, limit: int, offset: int
) -> list[AccessRow]:
    """One page of the tenant's cross-tenant access events, newest first (reading it is audited)."""
    principal.require("access_report", "read")
    assert principal.tenant_id is not None
    events = list(await session.scalars(_query(report).limit(limit).offset(offset)))
    rows = await _rows(session, principal.tenant_id, events)
    _read_event(session, principal, report, "json", len(rows))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_line(row: AccessRow) -> list[str]:
    requesting = row.requesting_tenant or Party(None, None)
    source = row.source_tenant or Party(None, None)
    values = (
        row.id,
        row.at,
        row.action,
        row.direction,
        row.outcome,
        row.basis,
        row.flagged,
        row.category,
        row.purpose,
        row.patient_id,
        row.user.id,
        row.user.name,
        requesting.id,
        requesting.name,
        source.id,
        source.name,
        row.consent_id,
        row.break_glass_id,
        row.reason,
        row.items,
    )
    return [_cell(v) for v in values]


@dataclass(frozen=True)
class CsvExport:
    content: str
    rows: int
    truncated: bool
    filename: str


async def access_report_csv(session: AsyncSession, principal: Principal, report: ReportFilters) -> CsvExport:
    """The report as CSV: every matching row, newest first, up to :data:`CSV_ROW_CAP` (reading it is audited)."""
    principal.require("access_report", "read")
    assert principal.tenant_id is not None
    events = list(await session.scalars(_query(report).limit(CSV_ROW_CAP + 1)))
    truncated = len(events) > CSV_ROW_CAP
    rows = await _rows(session, principal.tenant_id, events[:CSV_ROW_CAP])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_line(r) for r in rows)
    slug = await session.scalar(select(Tenant.slug).where(Tenant.id == principal.tenant_id))
    since = report.since.strftime("%Y%m%d") if report.since else "start"
    until = report.until.strftime("%Y%m%d") if report.until else utcnow().strftime("%Y%m%d")
    _read_event(session, principal, report, "csv", len(rows))
    return CsvExport(
        content=out.getvalue(),
        rows=len(rows),
        truncated=truncated,
        filename=f"access-report-{slug or 'tenant'}-{since}-{until}.csv",
    )
