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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import AuditEvent
from core.consent import decision, linking
from core.consent.access import ACCESS_ACTIONS, BREAK_GLASS_OPEN
from core.consent.categories import BREAK_GLASS_PURPOSE, CATEGORIES
from core.consent.models import PatientLink
from core.consent.network import tenant_names
from core.db import utcnow
from core.errors import InvalidInput
from core.inputs import to_utc
from core.portal.service import own_patient
from core.principal import Principal
from tenants.context import tenant_context
from tenants.models import Tenant, User

Sessions = Callable[[], AsyncSession]

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

# What the patient reads: categories and purposes in plain words.
CATEGORY_LABELS = {
    "demographics": "personal details (name, birth date, contact details)",
    "care_plan": "care plan",
    "tasks_appointments": "tasks and appointments",
    "messages": "messages",
    "clinical_results": "lab results",
    "behavioral_health": "mental health records",
    "substance_use_disorder": "substance use treatment records",
    "social_needs": "social needs (housing, food, transport)",
}
PURPOSE_LABELS = {
    "treatment": "to treat you",
    "care_coordination": "to coordinate your care",
    "payment": "for payment",
    "research": "for research",
}


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


def _text(detail: dict[str, Any], key: str) -> str | None:
    value = detail.get(key)
    return str(value) if value not in (None, "") else None


def _id(detail: dict[str, Any], key: str) -> uuid.UUID | None:
    value = _text(detail, key)
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
    return _text(detail, "basis")


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
        [tenant_id] + [_id(d, "requesting_tenant_id") for d in details] + [_id(d, "source_tenant_id") for d in details],
    )
    rows = []
    for event, detail in zip(events, details, strict=True):
        direction = _text(detail, "direction")
        basis = _basis(event)
        own = Party(tenant_id, tenants.get(tenant_id))
        if direction == "inbound":
            requester_id = _id(detail, "requesting_tenant_id")
            recorded_name = _text(detail, "requesting_tenant_name")
            requesting: Party | None = Party(
                requester_id, recorded_name or (tenants.get(requester_id) if requester_id else None)
            )
            source: Party | None = own
        else:
            requesting = own
            source_id = _id(detail, "source_tenant_id")
            source = Party(source_id, tenants.get(source_id)) if source_id is not None else None
        user_name = users.get(event.actor_user_id) if event.actor_user_id else None
        if event.action == BREAK_GLASS_OPEN:
            user_name = user_name or _text(detail, "requesting_user")
        rows.append(
            AccessRow(
                id=event.id,
                at=event.at,
                action=event.action,
                direction=direction,
                outcome=event.outcome,
                basis=basis,
                category=_text(detail, "category"),
                purpose=_text(detail, "purpose") or (BREAK_GLASS_PURPOSE if event.action == BREAK_GLASS_OPEN else None),
                patient_id=event.patient_id,
                user=Party(event.actor_user_id, user_name),
                requesting_tenant=requesting,
                source_tenant=source,
                consent_id=_id(detail, "consent_id"),
                break_glass_id=_id(detail, "break_glass_id"),
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


class PortalAccessOut(msgspec.Struct):
    """One access to one of the patient's records by another organisation of the network, in plain words."""

    at: datetime
    # The organisation whose staff asked, and who.
    organisation: str | None
    user_name: str | None
    # The organisation whose record of the patient was looked at.
    record_organisation: str | None
    category: str | None
    category_label: str
    purpose: str | None
    purpose_label: str | None
    allowed: bool
    # "allowed", "refused" or "emergency access opened"
    status: str
    emergency: bool
    summary: str


@dataclass(frozen=True)
class _Inbound:
    id: uuid.UUID
    at: datetime
    action: str
    outcome: str
    user_id: uuid.UUID | None
    reason: str | None
    detail: dict[str, Any]
    record_tenant: uuid.UUID


async def _inbound_events(
    sessions: Sessions, tenant_id: uuid.UUID, patient_id: uuid.UUID, fetch: int
) -> list[_Inbound]:
    """The newest ``fetch`` inbound access events on one record, read in its own tenant's context."""
    with tenant_context(tenant_id):
        async with sessions() as other, other.begin():
            events = await other.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.patient_id == patient_id,
                    AuditEvent.action.in_(ACCESS_ACTIONS),
                    AuditEvent.detail["direction"].as_string() == "inbound",
                )
                .order_by(AuditEvent.at.desc(), AuditEvent.id)
                .limit(fetch)
            )
            return [
                _Inbound(e.id, e.at, e.action, e.outcome, e.actor_user_id, e.reason, dict(e.detail or {}), tenant_id)
                for e in events
            ]


def _portal_row(event: _Inbound, users: dict[uuid.UUID, str], tenants: dict[uuid.UUID, str]) -> PortalAccessOut:
    detail = event.detail
    requester_id = _id(detail, "requesting_tenant_id")
    organisation = _text(detail, "requesting_tenant_name") or (tenants.get(requester_id) if requester_id else None)
    user_name = (users.get(event.user_id) if event.user_id else None) or _text(detail, "requesting_user")
    record_organisation = tenants.get(event.record_tenant)
    who = f"{user_name or 'A staff member'} ({organisation or 'another organisation'})"
    where = f"your record at {record_organisation}" if record_organisation else "your record"
    if event.action == BREAK_GLASS_OPEN:
        categories = [CATEGORY_LABELS.get(str(c), str(c)) for c in detail.get("categories") or []]
        label = "emergency access to " + (", ".join(categories) if categories else "your records")
        return PortalAccessOut(
            at=event.at,
            organisation=organisation,
            user_name=user_name,
            record_organisation=record_organisation,
            category=None,
            category_label=label,
            purpose=BREAK_GLASS_PURPOSE,
            purpose_label=PURPOSE_LABELS[BREAK_GLASS_PURPOSE],
            allowed=True,
            status="emergency access opened",
            emergency=True,
            summary=f"{who} opened emergency access to {where} without your consent, giving the reason: "
            f"{event.reason or 'none given'}. The organisation's privacy officer reviews it.",
        )
    category = _text(detail, "category")
    purpose = _text(detail, "purpose")
    label = CATEGORY_LABELS.get(category or "", category or "your record")
    purpose_label = PURPOSE_LABELS.get(purpose or "", purpose) if purpose else None
    allowed = event.outcome == "success"
    emergency = detail.get("basis") == decision.BREAK_THE_GLASS
    if allowed:
        summary = f"{who} looked at the {label} in {where}" + (f" {purpose_label}" if purpose_label else "")
        summary += " (emergency access)." if emergency else "."
    else:
        summary = f"{who} asked to see the {label} in {where}; it was refused (no consent of yours allows it)."
    return PortalAccessOut(
        at=event.at,
        organisation=organisation,
        user_name=user_name,
        record_organisation=record_organisation,
        category=category,
        category_label=label,
        purpose=purpose,
        purpose_label=purpose_label,
        allowed=allowed,
        status="allowed" if allowed else "refused",
        emergency=emergency,
        summary=summary,
    )


async def portal_access_log(
    session: AsyncSession, sessions: Sessions, principal: Principal, *, limit: int, offset: int
) -> list[PortalAccessOut]:
    """Who in the network accessed (or asked to access) any of the signed-in patient's records, newest first.

    Covers every record linked to the patient's person, in every tenant; allowed and refused requests and
    emergency (break-the-glass) openings. Each tenant's events are read in that tenant's context.
    """
    patient_id = own_patient(principal, "read")
    assert principal.tenant_id is not None
    link = await linking.link_of(session, principal.tenant_id, patient_id)
    records: list[tuple[uuid.UUID, uuid.UUID]] = [(principal.tenant_id, patient_id)]
    if link is not None:
        records = [
            (row[0], row[1])
            for row in await session.execute(
                select(PatientLink.tenant_id, PatientLink.patient_id).where(PatientLink.person_id == link.person_id)
            )
        ]
    # Each record's newest offset + limit events suffice to page through their merge.
    fetch = offset + limit
    events: list[_Inbound] = []
    for tenant_id, their_patient in records:
        events.extend(await _inbound_events(sessions, tenant_id, their_patient, fetch))
    events.sort(key=lambda e: (e.at, e.id.hex), reverse=True)
    page = events[offset : offset + limit]
    users = await user_names(session, (e.user_id for e in page))
    tenants = await tenant_names(
        session, [e.record_tenant for e in page] + [_id(e.detail, "requesting_tenant_id") for e in page]
    )
    audit.record(
        session,
        principal.actor,
        action="portal.access_log.read",
        resource_type="AuditEvent",
        patient_id=patient_id,
        detail={"rows": len(page)},
    )
    return [_portal_row(e, users, tenants) for e in page]
