"""One page of a pull: search (or follow the run's ``next`` link), map what it holds, say where to go on.

Encounters, conditions and observations are searched with ``_include=<Type>:subject``, so the page carries the
Patients it refers to; a Patient the server did not include is read (``GET Patient/<id>``), once per page. Each
page also upserts those patients before the records that refer to them: the host refuses a whole batch for one
record whose patient it does not hold, which would otherwise happen for a patient created in the EHR after the
patient pull ran, or one the patient pull could not map.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from plugin_sdk import (
    AddObservation,
    AnyEffect,
    PluginContext,
    PullBatch,
    RecordCondition,
    RecordEncounter,
    UpsertPatient,
)
from plugin_sdk.payloads import PatientRecord, PatientRef
from plugins.ehr_fhir.client import FhirClient
from plugins.ehr_fhir.clinical import condition_record, encounter_record
from plugins.ehr_fhir.mapping import Json, Unmappable, patient_record, reference_key, sensitive_label
from plugins.ehr_fhir.observation import observation_record
from plugins.ehr_fhir.transport import FhirError
from plugins.ehr_fhir.watermark import Watermark, instant, server_time

Mapper = Callable[[Json, PatientRef], AnyEffect]
MAPPERS: dict[str, Mapper] = {
    "Encounter": lambda r, p: RecordEncounter(encounter=encounter_record(r, p)),
    "Condition": lambda r, p: RecordCondition(condition=condition_record(r, p)),
    "Observation": lambda r, p: AddObservation(observation=observation_record(r, p)),
}
PAGE_GONE = (404, 410)  # an expired page token: the run starts again from its since


async def pull(context: PluginContext, resource_type: str, since: str | None) -> PullBatch:
    client = FhirClient(context)
    mark = Watermark.decode(since)
    bundle: dict[str, Any] | None = None
    run = mark.run
    if mark.next:
        client.check_origin(mark.next)
        try:
            bundle, _ = await client.read_json(mark.next)
        except FhirError as exc:
            if exc.status not in PAGE_GONE:
                raise
            context.log.warning(
                "%s: the EHR no longer has the next page (%s); the run starts again", resource_type, exc
            )
            mark = Watermark(since=mark.since)
    if bundle is None or run is None:
        started = context.now()
        params = {"_count": str(client.config.page_size), "_sort": "_lastUpdated"}
        if mark.since:
            params["_lastUpdated"] = "gt" + instant(mark.since)
        if resource_type in MAPPERS:
            params["_include"] = f"{resource_type}:subject"
        bundle, response = await client.read_json(resource_type, params)
        run = server_time(bundle, response, started)
    if bundle.get("resourceType") != "Bundle":
        raise FhirError(f"the {resource_type} search answered a {bundle.get('resourceType')}, not a Bundle")
    next_url = next_link(bundle)
    if next_url:
        client.check_origin(next_url)  # before anything of this page is applied or stored
        if next_url == mark.next:
            raise FhirError(f"the EHR's {resource_type} page links to itself as the next one")
    effects = await Page(client, resource_type, bundle).effects()
    watermark = Watermark(since=mark.since, run=run, next=next_url) if next_url else mark.finished(run)
    return PullBatch(effects=effects, watermark=watermark.encode(), more=next_url is not None)


def next_link(bundle: Json) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


class Page:
    """The effects of one searchset page, and the count of what was skipped and why (logged, never failing)."""

    def __init__(self, client: FhirClient, resource_type: str, bundle: Json) -> None:
        self.client = client
        self.resource_type = resource_type
        self.preferred = client.config.patient_identifier_system
        self.matches: list[Json] = []
        self.patients: dict[str, Json | None] = {}  # "Patient/<id>": the resource (None: not found)
        for entry in bundle.get("entry") or []:
            entry = entry or {}
            resource = entry.get("resource") or {}
            mode = (entry.get("search") or {}).get("mode")
            if resource.get("resourceType") == resource_type and mode in (None, "match"):
                self.matches.append(resource)
            elif resource.get("resourceType") == "Patient" and resource.get("id"):
                self.patients[f"Patient/{resource['id']}"] = resource
        self.skipped: Counter[str] = Counter()
        self.upserted: set[str] = set()
        self.records: dict[str, PatientRecord] = {}

    async def effects(self) -> list[AnyEffect]:
        effects: list[AnyEffect] = []
        for resource in self.matches:
            try:
                effects += await self._effects_of(resource)
            except Unmappable as exc:
                self.skipped[str(exc)] += 1
        log = self.client.context.log
        mapped = len(self.matches) - self.skipped.total()
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            log.info("%s page: %d mapped, %d skipped (%s)", self.resource_type, mapped, self.skipped.total(), reasons)
        else:
            log.debug("%s page: %d mapped", self.resource_type, mapped)
        return effects

    async def _effects_of(self, resource: Json) -> list[AnyEffect]:
        if not resource.get("id"):
            raise Unmappable("resource without an id")
        label = sensitive_label(resource)
        if label:
            raise Unmappable(f"labelled {label}")
        if self.resource_type == "Patient":
            return [UpsertPatient(patient=patient_record(resource, self.preferred))]
        key = reference_key(resource.get("subject"))
        if key is None:
            raise Unmappable("subject not a Patient reference")
        patient = await self._patient(key)
        effects: list[AnyEffect] = []
        if key not in self.upserted:
            effects.append(UpsertPatient(patient=patient))
        record = MAPPERS[self.resource_type](resource, PatientRef(identifiers=patient.identifiers))
        self.upserted.add(key)
        return [*effects, record]

    async def _patient(self, key: str) -> PatientRecord:
        if key in self.records:
            return self.records[key]
        if key not in self.patients:
            try:
                self.patients[key], _ = await self.client.read_json(key)
            except FhirError as exc:
                if exc.status not in (404, 410):
                    raise
                self.patients[key] = None
        patient = self.patients[key]
        if patient is None or patient.get("resourceType") != "Patient":
            raise Unmappable("patient not found")
        if sensitive_label(patient):
            raise Unmappable(f"patient labelled {sensitive_label(patient)}")
        try:
            self.records[key] = patient_record(patient, self.preferred)
        except Unmappable as exc:
            raise Unmappable(f"{exc} (referring record)") from None
        return self.records[key]
