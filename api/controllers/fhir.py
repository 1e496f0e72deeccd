"""Read-only FHIR R4 endpoint: ``/fhir/metadata``, ``/fhir/{type}/{id}`` and ``/fhir/{type}?patient=<id>``.

Staff only, with the staff API's permissions; errors answer as FHIR OperationOutcomes (``application/fhir+json``)
with the status, headers and audit the rest of the API gives them.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from api.deps import Caller, Db
from api.errors import EXCEPTION_HANDLERS
from core.errors import DomainError
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


def _patient_param(patient: str | None, resource_id: str | None, resource_type: str) -> uuid.UUID | None:
    """The patient searched for: ``patient`` (``<id>``, ``Patient/<id>`` or its URL), or ``_id`` for Patient."""
    value, name = (patient, "patient") if patient is not None else (resource_id, "_id")
    if value is None or (name == "_id" and resource_type != "Patient"):
        raise DomainError("the patient search parameter is required", field="patient", source="query")
    found = _PATIENT.match(value.strip())
    try:
        return uuid.UUID(found["id"]) if found else None
    except ValueError:
        return None


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

    @get("/{resource_type:str}", summary="A patient's resources of one type, as a searchset Bundle")
    async def search(
        self,
        request: Request[Any, Any, Any],
        session: Db,
        principal: Caller,
        resource_type: FromPath[str],
        patient: Annotated[
            str | None, QueryParameter(max_length=300, description="the patient: <id> or Patient/<id>")
        ] = None,
        patient_id: Annotated[
            str | None, QueryParameter(name="_id", max_length=64, description="Patient searches: the id")
        ] = None,
        count: Annotated[
            int, QueryParameter(name="_count", ge=0, le=1_000_000, description="page size (at most 100)")
        ] = DEFAULT_COUNT,
        offset: Annotated[int, QueryParameter(name="_offset", ge=0, le=1_000_000, description="items to skip")] = 0,
    ) -> Response[Any]:
        links = _links(request)
        service.check_type(resource_type)
        wanted = _patient_param(patient, patient_id, resource_type)
        count = min(count, service.MAX_COUNT)
        page = await service.search(session, principal, resource_type, wanted, links, count=count, offset=offset)
        params = {"patient": patient} if patient is not None else {"_id": patient_id or ""}
        return _fhir(searchset(page, links.fhir_base, resource_type, params, count=count, offset=offset))
