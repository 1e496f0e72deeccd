"""FHIR R4 endpoint: ``/fhir/metadata``, ``/fhir/{type}/{id}``, ``/fhir/{type}?patient=<id>`` (or ``_id``, with
``_include`` / ``_revinclude``) and ``POST /fhir/Consent`` (conditional create with ``If-None-Exist``).

Staff only, with the staff API's permissions; errors answer as FHIR OperationOutcomes (``application/fhir+json``)
with the status, headers and audit the rest of the API gives them.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from api.deps import Caller, Db
from api.errors import EXCEPTION_HANDLERS
from core.errors import DomainError, InvalidInput
from core.fhir import service
from core.fhir.common import MEDIA_TYPE
from core.fhir.documents import capability_statement, operation_outcome, searchset

DEFAULT_COUNT = 50
# "<id>", "Patient/<id>" or an absolute URL ending in "/Patient/<id>"; any other reference finds nothing.
_PATIENT = re.compile(r"^(?:(?:https?://\S+/)?Patient/)?(?P<id>[A-Za-z0-9\-.]{1,64})$")


def _fhir(content: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _links(request: Request[Any, Any, Any]) -> service.Links:
    root = str(request.base_url).rstrip("/")
    return service.Links(fhir_base=f"{root}/fhir", api_base=f"{root}/api/v1")


def as_operation_outcome(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Answer an error as the rest of the API would (status, headers, logging), with an OperationOutcome body."""
    handler = next(EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__ if cls in EXCEPTION_HANDLERS)
    problem = handler(request, exc)
    body = problem.content if isinstance(problem.content, dict) else {}
    fields = [(str(e.get("field")), str(e.get("message"))) for e in body.get("errors", [])]
    outcome = operation_outcome(problem.status_code, str(body.get("detail", "")), fields)
    headers = {k: v for k, v in problem.headers.items() if k.lower() != "content-type"}
    return _fhir(outcome, problem.status_code, headers)


def _patient_param(patient: str) -> uuid.UUID | None:
    """The patient searched for: ``<id>``, ``Patient/<id>`` or its URL (anything else finds nothing)."""
    found = _PATIENT.match(patient.strip())
    try:
        return uuid.UUID(found["id"]) if found else None
    except ValueError:
        return None


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _criteria(
    resource_type: str,
    patient: str | None,
    resource_id: str | None,
    include: list[str] | None,
    revinclude: list[str] | None,
) -> service.Criteria:
    """The search's criteria; a malformed patient reference or id finds nothing (like a missing one)."""
    if patient is None and resource_id is None:
        raise DomainError("the patient search parameter (or _id) is required", field="patient", source="query")
    patient_id = _patient_param(patient) if patient is not None else None
    wanted = _as_uuid(resource_id) if resource_id is not None else None
    nothing = (patient is not None and patient_id is None) or (resource_id is not None and wanted is None)
    includes = service.PATIENT_PARAMS.get(resource_type, ())
    for value in include or []:
        parts = value.split(":")
        source, param = [*parts, "", ""][:2]
        if (
            resource_type == "Patient"
            or source != resource_type
            or param not in includes
            or len(parts) > 3
            or parts[2:] not in ([], ["Patient"])
        ):
            allowed = ", ".join(f"{resource_type}:{p}" for p in includes) or "none on Patient searches"
            raise InvalidInput(
                f"unsupported _include {value[:80]!r} (supported: {allowed})", field="_include", source="query"
            )
    rev: list[str] = []
    for value in revinclude or []:
        source, _, param = value.partition(":")
        if resource_type != "Patient" or param not in service.PATIENT_PARAMS.get(source, ()):
            raise InvalidInput(
                f"unsupported _revinclude {value[:80]!r} (supported on Patient searches: <Type>:patient or "
                "<Type>:subject)",
                field="_revinclude",
                source="query",
            )
        rev.append(source)
    return service.Criteria(
        patient_id=patient_id,
        resource_id=wanted,
        nothing=nothing,
        include=bool(include),
        revinclude=tuple(dict.fromkeys(rev)),
    )


PatientQuery = Annotated[str | None, QueryParameter(max_length=300, description="the patient: <id> or Patient/<id>")]
IdQuery = Annotated[str | None, QueryParameter(name="_id", max_length=64, description="the resource's id")]
Count = Annotated[int, QueryParameter(name="_count", ge=0, le=1_000_000, description="page size (at most 100)")]
OffsetQuery = Annotated[int, QueryParameter(name="_offset", ge=0, le=1_000_000, description="items to skip")]
IncludeQuery = Annotated[
    list[str] | None,
    QueryParameter(name="_include", max_items=8, description="<Type>:patient or <Type>:subject: the patient too"),
]
RevIncludeQuery = Annotated[
    list[str] | None,
    QueryParameter(
        name="_revinclude", max_items=8, description="Patient searches: <Type>:patient, the resources about them"
    ),
]


async def _search(
    request: Request[Any, Any, Any],
    session: Any,
    principal: Any,
    resource_type: str,
    patient: str | None,
    resource_id: str | None,
    count: int,
    offset: int,
    include: list[str] | None,
    revinclude: list[str] | None,
) -> Response[Any]:
    links = _links(request)
    service.check_type(resource_type)
    criteria = _criteria(resource_type, patient, resource_id, include, revinclude)
    count = min(count, service.MAX_COUNT)
    page = await service.search(session, principal, resource_type, criteria, links, count=count, offset=offset)
    params: list[tuple[str, str]] = []
    if patient is not None:
        params.append(("patient", patient))
    if resource_id is not None:
        params.append(("_id", resource_id))
    params += [("_include", v) for v in include or []] + [("_revinclude", v) for v in revinclude or []]
    return _fhir(searchset(page, links.fhir_base, resource_type, params, count=count, offset=offset))


class FhirController(Controller):
    path = "/fhir"
    tags = ["fhir"]
    exception_handlers = dict.fromkeys(EXCEPTION_HANDLERS, as_operation_outcome)

    @get(
        "/metadata",
        opt={"public": True},
        summary="The FHIR CapabilityStatement (public): FHIR 4.0.1, types served, search by patient",
    )
    async def metadata(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return _fhir(capability_statement(_links(request).fhir_base))

    @get("/{resource_type:str}/{resource_id:str}", summary="One resource (Patient, CareTeam, CarePlan, Goal, ...)")
    async def read(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        resource_type: FromPath[str],
        resource_id: FromPath[str],
    ) -> Response[Any]:
        return _fhir(await service.read(session, principal, resource_type, resource_id, _links(request)))

    @get("/{resource_type:str}", summary="A patient's resources of one type (or one by _id), as a searchset Bundle")
    async def search(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        resource_type: FromPath[str],
        patient: PatientQuery = None,
        resource_id: IdQuery = None,
        count: Count = DEFAULT_COUNT,
        offset: OffsetQuery = 0,
        include: IncludeQuery = None,
        revinclude: RevIncludeQuery = None,
    ) -> Response[Any]:
        return await _search(
            request, session, principal, resource_type, patient, resource_id, count, offset, include, revinclude
        )

    # Consent has its own path (for create): its search is answered here too.
    @get("/Consent", summary="A patient's consents recorded by this tenant (or one by _id), as a searchset Bundle")
    async def search_consents(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        patient: PatientQuery = None,
        resource_id: IdQuery = None,
        count: Count = DEFAULT_COUNT,
        offset: OffsetQuery = 0,
        include: IncludeQuery = None,
        revinclude: RevIncludeQuery = None,
    ) -> Response[Any]:
        return await _search(
            request, session, principal, "Consent", patient, resource_id, count, offset, include, revinclude
        )

    @post(
        "/Consent",
        summary="Record a patient's consent from a FHIR Consent; If-None-Exist: identifier=system|value makes it "
        "conditional (this tenant's consents only)",
    )
    async def create_consent(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        data: JSONBody[Any],
        if_none_exist: Annotated[
            str | None,
            HeaderParameter(name="If-None-Exist", max_length=400, description="identifier=system|value"),
        ] = None,
    ) -> Response[Any]:
        created, resource = await service.create_consent(session, principal, data, if_none_exist)
        location = f"{_links(request).fhir_base}/Consent/{resource['id']}"
        return _fhir(resource, 201 if created else 200, {"Location": location})
