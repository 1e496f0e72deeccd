"""Access transparency: the privacy officer's access report (JSON and CSV) and the patient's portal access log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter

from api.deps import Caller, Db, Limit, Offset, Page, cross_tenant_sessions, page_of
from core.consent import portal_log, report
from core.consent.portal_log import PortalAccessOut
from core.consent.report import AccessRow, ReportFilters

Choice = Annotated[str | None, QueryParameter(max_length=64)]
Id = Annotated[str | None, QueryParameter(max_length=64, description="a UUID")]
Filters = NamedDependency[ReportFilters]


def provide_report_filters(
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    direction: Choice = None,
    outcome: Choice = None,
    basis: Choice = None,
    patient_id: Id = None,
    user_id: Id = None,
    requesting_tenant_id: Id = None,
    category: Choice = None,
) -> ReportFilters:
    """The report's filters, from the query (shared by the JSON and CSV routes); 422 naming a bad one."""
    return report.filters(
        since=since,
        until=until,
        direction=direction,
        outcome=outcome,
        basis=basis,
        patient_id=patient_id,
        user_id=user_id,
        requesting_tenant_id=requesting_tenant_id,
        category=category,
    )


class AccessController(Controller):
    path = "/api/v1"
    tags = ["access transparency"]
    dependencies = {"report_filters": Provide(provide_report_filters, sync_to_thread=False)}

    @get(
        "/access-report",
        summary="Cross-tenant accesses to and from this tenant's records, newest first (privacy officers)",
        description=(
            "Inbound rows: another tenant's user asked for one of our records; outbound rows: one of our users asked "
            "for another tenant's record (the source tenant is named only when access was allowed). Break-the-glass "
            "accesses and openings are flagged. Times need a time zone; `until` is exclusive."
        ),
    )
    async def access_report(
        self,
        session: Db,
        principal: Caller,
        report_filters: Filters,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[AccessRow]:
        items = await report.access_report(session, principal, report_filters, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get(
        "/access-report.csv",
        summary="The access report as CSV (same filters)",
        description=(
            f"Every matching row, newest first, up to {report.CSV_ROW_CAP:,} rows: the `X-Row-Cap` header gives the "
            "cap and `X-Truncated: true` says the export was cut (narrow the dates to get the rest). Cells that a "
            "spreadsheet would run as a formula are prefixed with a quote."
        ),
        media_type="text/csv",
    )
    async def access_report_csv(
        self,
        session: Db,
        principal: Caller,
        report_filters: Filters,
    ) -> Response[str]:
        export = await report.access_report_csv(session, principal, report_filters)
        return Response(
            export.content,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "X-Row-Cap": str(report.CSV_ROW_CAP),
                "X-Truncated": "true" if export.truncated else "false",
                "Cache-Control": "no-store",
            },
        )

    @get("/portal/access-log", summary="Who in the network looked at (or asked to see) your records, and when")
    async def portal_access_log(
        self, request: Request[Any, Any, Any], session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[PortalAccessOut]:
        items = await portal_log.portal_access_log(
            session, cross_tenant_sessions(request), principal, limit=limit, offset=offset
        )
        return page_of(items, limit, offset)
