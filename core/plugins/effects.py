"""Applying what a plugin asked for, inside the tenant's transaction, audited as the plugin.

Each effect is checked first: its data category (and any sensitive label) must be one the plugin's manifest
declares, the patient it names must be the tenant's (found by an identifier), and its times must be plausible.
A batch is all or nothing: the first effect that fails raises :class:`EffectRejected` with its index, and the
caller's transaction rolls back. Records from a feed are keyed by (plugin, external id): a repeated effect
updates the record it made, so redelivery and replays change nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox, staff
from core.careteams.members import lead_of
from core.conditions.models import Condition
from core.consent import linking
from core.db import utcnow
from core.encounters.models import Encounter
from core.patients.models import Patient, PatientIdentifier
from core.plugins.patients import find_patient, owners_of
from core.results.models import LabResult
from core.tasks.automatic import add_task
from core.tasks.models import Task
from plugin_sdk import effects as fx
from plugin_sdk.labels import most_protective
from plugin_sdk.manifest import Manifest
from plugin_sdk.payloads import PatientRecord, PatientRef
from tenants.isolation import append

# A result's finer flag, as carehub's three interpretations.
INTERPRETATION = {
    "normal": "normal",
    "abnormal": "abnormal",
    "low": "abnormal",
    "high": "abnormal",
    "critical_low": "critical",
    "critical_high": "critical",
    "critical": "critical",
}
FUTURE_SLACK = timedelta(minutes=10)  # clocks differ; a result from the future beyond this is a sender's error
_SYSTEM_LENGTH: int = PatientIdentifier.__table__.c.system.type.length  # type: ignore[attr-defined]
_VALUE_LENGTH: int = PatientIdentifier.__table__.c.value.type.length  # type: ignore[attr-defined]
# The patient fields an upsert with keep_missing leaves alone when the sender left them out.
_CONTACT_FIELDS = frozenset({"phone", "email", "address", "language"})


# The content type of a pulled record the host refused, kept for review as an inbound message (its text is the
# effect as JSON): a replay applies it again.
EFFECT_CONTENT_TYPE = "application/vnd.carehub.effect+json"


class EffectRejected(Exception):
    def __init__(self, index: int, kind: str, reason: str) -> None:
        super().__init__(f"effect {index} ({kind}): {reason}")
        self.index, self.kind, self.reason = index, kind, reason


def actor_for(plugin: str) -> audit.Actor:
    return audit.Actor(user_id=None, roles=(f"plugin:{plugin}",))


class Applier:
    """Applies one plugin's effects for the current tenant; counts what it did (for the caller's log)."""

    def __init__(self, session: AsyncSession, manifest: Manifest) -> None:
        self.session = session
        self.manifest = manifest
        self.actor = actor_for(manifest.name)
        self.applied = 0
        # What this batch has read or made: patients by identifier, feed records by (model, external id). A
        # message's effects name one patient many times, and each looked-up record once.
        self._patients: dict[tuple[str, str], Patient] = {}
        self._ids: dict[tuple[str, str], uuid.UUID] = {}
        self._created: dict[uuid.UUID, dict[str, Any]] = {}  # patients appended as rows, by id
        self._absent: set[tuple[str, str]] = set()  # identifiers no patient held when the batch was read
        self._records: dict[tuple[type[Any], str], Any] = {}

    def _audit(
        self, action: str, resource_type: str, resource_id: uuid.UUID, patient_id: uuid.UUID, **detail: Any
    ) -> None:
        audit.record(
            self.session,
            self.actor,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
            detail={"plugin": self.manifest.name, **detail},
        )

    def _allowed(self, category: str, label: str | None) -> str | None:
        for needed in (category, label):
            if needed and needed not in self.manifest.data_categories:
                return f"the manifest of {self.manifest.name} does not declare the data category {needed!r}"
        return None

    async def apply_all(self, effects: Sequence[fx.Effect], *, flush: bool = True) -> int:
        """Apply ``effects`` in order; how many this Applier has applied so far. An Applier may take several
        batches in one transaction (the messages a listener stored), sharing what it looked up; ``flush`` False
        leaves the writes to the session's next statement or commit."""
        await self.prefetch(effects)
        for index, effect in enumerate(effects):
            kind = type(effect).__name__
            label = getattr(getattr(effect, kind_field(effect), None), "data_category", None)
            refused = self._allowed(effect.CATEGORY, label)
            if refused:
                raise EffectRejected(index, kind, refused)
            try:
                await self.apply(effect)
            except LookupError as exc:
                raise EffectRejected(index, kind, str(exc)) from None
            except ValueError as exc:
                raise EffectRejected(index, kind, str(exc)) from None
            self.applied += 1
        if flush:
            await self.session.flush()
        return self.applied

    async def apply(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.UpsertPatient):
            await self.upsert_patient(effect)
        elif isinstance(effect, fx.MergePatient):
            await self.merge_patient(effect)
        elif isinstance(effect, fx.RecordEncounter):
            await self.record_encounter(effect)
        elif isinstance(effect, fx.RecordCondition):
            await self.record_condition(effect)
        elif isinstance(effect, fx.AddObservation):
            await self.add_observation(effect)
        elif isinstance(effect, fx.CreateTask):
            await self.create_task(effect)
        else:  # pragma: no cover - the union is closed
            raise ValueError(f"unknown effect {type(effect).__name__}")

    async def prefetch(self, effects: Sequence[fx.Effect]) -> None:
        """Read the patients and the feed records the batch's effects name, one query per kind."""
        await self._prefetch_patients(effects)
        wanted: dict[type[Any], set[str]] = {}
        for effect in effects:
            for model, field in _KEYED:
                data = getattr(effect, field, None)
                if data is not None:
                    wanted.setdefault(model, set()).add(data.external_id)
        for model, ids in wanted.items():
            missing = [i for i in ids if (model, i) not in self._records]
            if not missing:
                continue
            rows = await self.session.scalars(
                select(model).where(model.source == self.manifest.name, model.external_id.in_(missing))
            )
            found = {row.external_id: row for row in rows}
            for external_id in missing:
                self._records[(model, external_id)] = found.get(external_id)

    async def _prefetch_patients(self, effects: Sequence[fx.Effect]) -> None:
        pairs = {
            (i.system, i.value)
            for effect in effects
            if isinstance(effect, fx.UpsertPatient)
            for i in effect.patient.identifiers
        }
        pairs -= self._absent | self._ids.keys()
        if not pairs or any(isinstance(effect, fx.MergePatient) for effect in effects):
            return
        owners = set((await owners_of(self.session, sorted(pairs))).values())
        for patient in await self.session.scalars(select(Patient).where(Patient.id.in_(owners))) if owners else ():
            for held in patient.identifiers:
                self._patients[(held.system, held.value)] = patient
                self._ids[(held.system, held.value)] = patient.id
        self._absent |= pairs - self._ids.keys()

    async def _record(self, model: type[Any], external_id: str) -> Any:
        """The feed record of this plugin with ``external_id``, or None; read once per batch."""
        key = (model, external_id)
        if key not in self._records:
            self._records[key] = await self.session.scalar(
                select(model).where(model.source == self.manifest.name, model.external_id == external_id)
            )
        return self._records[key]

    def _new_record(self, model: type[Any], external_id: str) -> Any:
        row = model(id=uuid.uuid4(), source=self.manifest.name, external_id=external_id)
        self.session.add(row)
        self._records[(model, external_id)] = row
        return row

    async def _find(self, ref: PatientRef) -> Patient | None:
        """The tenant's patient with one of ``ref``'s identifiers (the first one that a patient holds, as
        :func:`find_patient` decides), as an ORM object (to change it)."""
        for identifier in ref.identifiers:
            pair = (identifier.system, identifier.value)
            known = self._patients.get(pair)
            if known is not None:
                return known
            if pair in self._ids:  # appended in this batch: read it back (its rows are written first)
                loaded = await self.session.get(Patient, self._ids[pair])
                if loaded is not None:
                    self._created.pop(loaded.id, None)  # from now on it changes as the object
                    for held in loaded.identifiers:
                        self._patients[(held.system, held.value)] = loaded
                    return loaded
        if all((i.system, i.value) in self._absent for i in ref.identifiers):
            return None  # looked up for the batch: no patient has any of them
        patient = await find_patient(self.session, ref)  # a patient appended in this batch is written first
        if patient is not None:
            for held in patient.identifiers:
                self._patients[(held.system, held.value)] = patient
                self._ids[(held.system, held.value)] = patient.id
        return patient

    async def _patient(self, ref: PatientRef) -> uuid.UUID:
        """The id of the tenant's patient ``ref`` names (the records a feed adds refer to nothing else)."""
        for identifier in ref.identifiers:
            known = self._ids.get((identifier.system, identifier.value))
            if known is not None:
                return known
        patient = await self._find(ref)
        if patient is None:
            shown = ", ".join(f"{i.system}|{i.value}" for i in ref.identifiers[:3])
            raise LookupError(f"no patient of this tenant has the identifier {shown}")
        return patient.id

    async def upsert_patient(self, effect: fx.UpsertPatient) -> None:
        record = effect.patient
        if not record.identifiers:
            raise ValueError("a patient needs at least one identifier")
        if len({(i.system, i.value) for i in record.identifiers}) < len(record.identifiers):
            raise ValueError("the patient names one identifier twice")
        for i in record.identifiers:
            if not 0 < len(i.system) <= _SYSTEM_LENGTH or not 0 < len(i.value) <= _VALUE_LENGTH:
                raise ValueError(
                    f"an identifier's system is 1-{_SYSTEM_LENGTH} characters and its value 1-{_VALUE_LENGTH}"
                )
        if record.birth_date > utcnow().date():
            raise ValueError("birth_date is in the future")
        fields = {
            "given_name": record.given_name[:100],
            "family_name": record.family_name[:100],
            "birth_date": record.birth_date,
            "sex": record.sex,
            "phone": record.phone,
            "email": record.email,
            "address": dict(record.address) if record.address else None,
            "language": record.language,
            "active": record.active,
        }
        if self._unchanged_new(record, fields, effect.keep_missing):
            return
        patient = await self._find(PatientRef(identifiers=record.identifiers))
        if patient is None:
            await self._create_patient(record, fields)
            return
        if effect.keep_missing:
            fields = {k: v for k, v in fields.items() if v is not None or k not in _CONTACT_FIELDS}
        changed = [k for k, v in fields.items() if getattr(patient, k) != v]
        for key in changed:
            setattr(patient, key, fields[key])
        have = {(i.system, i.value) for i in patient.identifiers}
        for ident in (i for i in record.identifiers if (i.system, i.value) not in have):
            pair = (ident.system, ident.value)
            owner = None if pair in self._absent else await find_patient(self.session, PatientRef(identifiers=(ident,)))
            if owner is None:  # an identifier of another record stays there (a merge moves it)
                patient.identifiers.append(PatientIdentifier(system=ident.system, value=ident.value))
                self._patients[pair], self._ids[pair] = patient, patient.id
                self._absent.discard(pair)
                changed.append("identifiers")
        if not changed:
            return
        patient.updated_at = utcnow()
        fields_changed = sorted(set(changed))
        outbox.emit(
            self.session,
            "patient.updated",
            {"patient_id": str(patient.id), "fields": fields_changed},
            aggregate_id=patient.id,
        )
        await self.session.flush()
        self._audit("patient.update", "Patient", patient.id, patient.id, fields=fields_changed)
        await linking.sync_patient(self.session, patient, self.actor)

    def _unchanged_new(self, record: PatientRecord, fields: dict[str, Any], keep_missing: bool) -> bool:
        """Whether ``record`` is a patient this Applier created and says nothing new of them (a result or a
        discharge after the admission in one batch): then there is nothing to read or write."""
        pairs = [(i.system, i.value) for i in record.identifiers]
        created = next((self._created[self._ids[p]] for p in pairs if self._ids.get(p) in self._created), None)
        if created is None or any(self._ids.get(p) != created["id"] for p in pairs):
            return False
        return all(created[k] == v for k, v in fields.items() if not (keep_missing and v is None))

    async def _create_patient(self, record: PatientRecord, fields: dict[str, Any]) -> None:
        """A new patient, appended as rows (what the API's create does): written with the batch's other rows.

        In a savepoint (a sync's page) rows become ORM objects, which the unit of work orders by relationships
        only, and a link's person has none: there the patient is an ORM object and its link made by
        :func:`linking.sync_patient`, which writes the person first.
        """
        if self.session.in_nested_transaction():
            patient = Patient(id=uuid.uuid4(), mrn=record.identifiers[0].value[:64], **fields)
            patient.identifiers = [PatientIdentifier(system=i.system, value=i.value) for i in record.identifiers]
            self.session.add(patient)
            for held in patient.identifiers:
                self._patients[(held.system, held.value)] = patient
                self._ids[(held.system, held.value)] = patient.id
            self._audit("patient.create", "Patient", patient.id, patient.id, fields=sorted(fields))
            outbox.emit(self.session, "patient.created", {"patient_id": str(patient.id)}, aggregate_id=patient.id)
            await linking.sync_patient(self.session, patient, self.actor)
            return
        now = utcnow()
        row: dict[str, Any] = {
            "mrn": record.identifiers[0].value[:64],
            **fields,
            "deactivated_at": None,
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
        }
        append(self.session, Patient, row)
        self._created[row["id"]] = row
        pairs = [(i.system, i.value) for i in record.identifiers]
        for system, value in pairs:
            append(
                self.session,
                PatientIdentifier,
                {"patient_id": row["id"], "system": system, "value": value, "id": uuid.uuid4()},
            )
            self._ids[(system, value)] = row["id"]
            self._absent.discard((system, value))
        self._audit("patient.create", "Patient", row["id"], row["id"], fields=sorted(fields))
        outbox.emit(self.session, "patient.created", {"patient_id": str(row["id"])}, aggregate_id=row["id"])
        await linking.link_new(self.session, self.actor, row, pairs)

    async def merge_patient(self, effect: fx.MergePatient) -> None:
        self._patients.clear()  # identifiers move: look everyone up again after a merge
        self._ids.clear()
        self._created.clear()
        self._absent.clear()
        merged = await find_patient(self.session, effect.merged)
        if merged is None:
            return  # nothing of the merged record is here
        surviving = await self._find(effect.surviving)
        if surviving is None:
            shown = ", ".join(f"{i.system}|{i.value}" for i in effect.surviving.identifiers[:3])
            raise LookupError(f"no patient of this tenant has the identifier {shown}")
        if surviving.id == merged.id:
            return
        moved: dict[str, list[str]] = {}
        models: tuple[Any, ...] = (Encounter, Condition, LabResult)
        for model in models:
            rows = (await self.session.scalars(select(model).where(model.patient_id == merged.id))).all()
            for row in rows:
                row.patient_id = surviving.id
            moved[model.__tablename__] = [str(r.id) for r in rows]
        identifiers = [(i.system, i.value) for i in merged.identifiers]
        merged.identifiers.clear()
        await self.session.flush()
        surviving.identifiers.extend(PatientIdentifier(system=s, value=v) for s, v in identifiers)
        merged.active, merged.deactivated_at = False, utcnow()
        audit.record(
            self.session,
            self.actor,
            action="patient.merge",
            resource_type="Patient",
            resource_id=surviving.id,
            patient_id=surviving.id,
            # Enough to undo it: the merged record, its identifiers and every record that moved.
            detail={
                "plugin": self.manifest.name,
                "merged_patient_id": str(merged.id),
                "identifiers": [f"{s}|{v}" for s, v in identifiers],
                "moved": moved,
            },
        )
        await self.session.flush()
        await linking.sync_patient(self.session, surviving, self.actor)
        await linking.sync_patient(self.session, merged, self.actor)

    async def record_encounter(self, effect: fx.RecordEncounter) -> None:
        data = effect.encounter
        patient_id = await self._patient(data.patient)
        if data.discharged_at is not None and data.discharged_at < data.admitted_at:
            raise ValueError("discharged_at is before admitted_at")
        row = await self._record(Encounter, data.external_id)
        was_discharged = row is not None and row.discharged_at is not None
        if row is None:
            row = self._new_record(Encounter, data.external_id)
        row.patient_id = patient_id
        row.kind, row.status, row.location = data.kind, data.status, data.location
        row.admitted_at, row.discharged_at, row.disposition = data.admitted_at, data.discharged_at, data.disposition
        # A transfer or a discharge seldom repeats the diagnoses: the stay keeps those it has, and its label is
        # never lowered by a message (the most protective of the two stays; a privacy officer may change it).
        if data.diagnoses or row.diagnoses is None:
            row.diagnoses = [{"system": c.system, "code": c.code, "display": c.display} for c in data.diagnoses]
        row.data_category = most_protective(row.data_category, data.data_category)
        self._audit("encounter.record", "Encounter", row.id, patient_id, status=row.status, kind=row.kind)
        if row.discharged_at is not None and not was_discharged and row.status != "cancelled":
            outbox.emit(
                self.session,
                "encounter.discharged",
                {"encounter_id": str(row.id), "patient_id": str(patient_id)},
                aggregate_id=patient_id,
            )

    async def record_condition(self, effect: fx.RecordCondition) -> None:
        data = effect.condition
        patient_id = await self._patient(data.patient)
        row = await self._record(Condition, data.external_id) or self._new_record(Condition, data.external_id)
        row.patient_id = patient_id
        row.code_system, row.code, row.display = data.code.system, data.code.code, data.code.display
        row.clinical_status, row.onset_at, row.abated_at = data.clinical_status, data.onset, data.abatement
        row.data_category = data.data_category
        self._audit("condition.record", "Condition", row.id, patient_id)

    async def add_observation(self, effect: fx.AddObservation) -> None:
        data = effect.observation
        patient_id = await self._patient(data.patient)
        if data.effective_at > utcnow() + FUTURE_SLACK:
            raise ValueError("effective_at is in the future")
        row = await self._record(LabResult, data.external_id)
        was_critical = row is not None and row.interpretation == "critical" and row.status != "cancelled"
        if row is None:
            row = self._new_record(LabResult, data.external_id)
        row.patient_id = patient_id
        row.code, row.display = data.code.code[:32], (data.code.display or data.code.code)[:200]
        row.value, row.unit, row.reference_range = data.value[:100], data.unit, data.reference_range
        row.interpretation, row.flag = INTERPRETATION[data.interpretation], data.interpretation
        row.status, row.category, row.effective_at = data.status, data.category, data.effective_at
        row.data_category = data.data_category
        self._audit("result.record", "Observation", row.id, patient_id, interpretation=row.interpretation)
        payload = {
            "result_id": str(row.id),
            "patient_id": str(patient_id),
            "code": row.code,
            "interpretation": row.interpretation,
            "status": row.status,
        }
        if row.interpretation == "critical" and row.status != "cancelled" and not was_critical:
            outbox.emit(self.session, "lab_result.critical_received", payload, aggregate_id=patient_id)

    async def create_task(self, effect: fx.CreateTask) -> None:
        patient_id = await self._patient(effect.patient)
        # The task remembers which effect made it, so a repeated effect makes it once.
        digest = hashlib.sha256(f"{self.manifest.name}\0{effect.dedupe_key}".encode()).hexdigest()[:40]
        key = f"plugin:{digest}"
        if await self.session.scalar(select(Task.id).where(Task.template_code == key)) is not None:
            return
        # Owned like the rules' tasks: the patient's care team lead, else a care manager, else an admin.
        owner = await lead_of(self.session, patient_id) or next(
            iter(await staff.holding(self.session, "care_manager", "tenant_admin")), None
        )
        if owner is None:
            raise LookupError("the tenant has no care manager or administrator to own the task")
        task = Task(
            id=uuid.uuid4(),
            patient_id=patient_id,
            title=effect.title[:200],
            description=effect.description,
            priority=effect.priority,
            due_at=effect.due_at,
            status="requested",
            template_code=key,
            owner_id=owner,
        )
        add_task(self.session, task, f"asked by the plugin {self.manifest.name}", {"plugin": self.manifest.name})
        await self.session.flush()


# The effects that carry a feed record keyed by (plugin, external id): the record's model and the effect's field.
_KEYED: tuple[tuple[type[Any], str], ...] = (
    (Encounter, "encounter"),
    (Condition, "condition"),
    (LabResult, "observation"),
)


def kind_field(effect: fx.Effect) -> str:
    """The name of the payload field an effect carries (its data_category lives there)."""
    for name in ("encounter", "condition", "observation", "patient"):
        if hasattr(effect, name):
            return name
    return ""
