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

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox, staff
from core.careteams.members import lead_of
from core.conditions.models import Condition
from core.consent import linking
from core.db import utcnow
from core.encounters.models import Encounter
from core.patients.models import Patient, PatientIdentifier
from core.results.models import LabResult
from core.tasks.automatic import add_task
from core.tasks.models import Task
from plugin_sdk import effects as fx
from plugin_sdk.manifest import Manifest
from plugin_sdk.payloads import PatientRef

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


class EffectRejected(Exception):
    def __init__(self, index: int, kind: str, reason: str) -> None:
        super().__init__(f"effect {index} ({kind}): {reason}")
        self.index, self.kind, self.reason = index, kind, reason


def actor_for(plugin: str) -> audit.Actor:
    return audit.Actor(user_id=None, roles=(f"plugin:{plugin}",))


async def find_patient(session: AsyncSession, ref: PatientRef) -> Patient | None:
    pairs = [(i.system, i.value) for i in ref.identifiers]
    if not pairs:
        return None
    patient_id = await session.scalar(
        select(PatientIdentifier.patient_id)
        .where(tuple_(PatientIdentifier.system, PatientIdentifier.value).in_(pairs))
        .limit(1)
    )
    return None if patient_id is None else await session.get(Patient, patient_id)


class Applier:
    """Applies one plugin's effects for the current tenant; counts what it did (for the caller's log)."""

    def __init__(self, session: AsyncSession, manifest: Manifest) -> None:
        self.session = session
        self.manifest = manifest
        self.actor = actor_for(manifest.name)
        self.applied = 0

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

    async def apply_all(self, effects: Sequence[fx.Effect]) -> int:
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

    async def _patient(self, ref: PatientRef) -> Patient:
        patient = await find_patient(self.session, ref)
        if patient is None:
            shown = ", ".join(f"{i.system}|{i.value}" for i in ref.identifiers[:3])
            raise LookupError(f"no patient of this tenant has the identifier {shown}")
        return patient

    async def upsert_patient(self, effect: fx.UpsertPatient) -> None:
        record = effect.patient
        if not record.identifiers:
            raise ValueError("a patient needs at least one identifier")
        if record.birth_date > utcnow().date():
            raise ValueError("birth_date is in the future")
        patient = await find_patient(self.session, PatientRef(identifiers=record.identifiers))
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
        if patient is None:
            patient = Patient(id=uuid.uuid4(), mrn=record.identifiers[0].value[:64], **fields)
            patient.identifiers = [PatientIdentifier(system=i.system, value=i.value) for i in record.identifiers]
            self.session.add(patient)
            action, changed = "patient.create", sorted(fields)
            outbox.emit(self.session, "patient.created", {"patient_id": str(patient.id)}, aggregate_id=patient.id)
        else:
            changed = [k for k, v in fields.items() if getattr(patient, k) != v]
            for key in changed:
                setattr(patient, key, fields[key])
            have = {(i.system, i.value) for i in patient.identifiers}
            new = [i for i in record.identifiers if (i.system, i.value) not in have]
            for ident in new:
                owner = await find_patient(self.session, PatientRef(identifiers=(ident,)))
                if owner is None:  # an identifier of another record stays there (a merge moves it)
                    patient.identifiers.append(PatientIdentifier(system=ident.system, value=ident.value))
                    changed.append("identifiers")
            action = "patient.update"
            if changed:
                patient.updated_at = utcnow()
                outbox.emit(
                    self.session,
                    "patient.updated",
                    {"patient_id": str(patient.id), "fields": sorted(set(changed))},
                    aggregate_id=patient.id,
                )
        await self.session.flush()
        if action == "patient.create" or changed:
            audit.record(
                self.session,
                self.actor,
                action=action,
                resource_type="Patient",
                resource_id=patient.id,
                patient_id=patient.id,
                detail={"plugin": self.manifest.name, "fields": sorted(set(changed))},
            )
            await linking.sync_patient(self.session, patient, self.actor)

    async def merge_patient(self, effect: fx.MergePatient) -> None:
        merged = await find_patient(self.session, effect.merged)
        if merged is None:
            return  # nothing of the merged record is here
        surviving = await self._patient(effect.surviving)
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
        patient = await self._patient(data.patient)
        if data.discharged_at is not None and data.discharged_at < data.admitted_at:
            raise ValueError("discharged_at is before admitted_at")
        row = await self.session.scalar(
            select(Encounter).where(Encounter.source == self.manifest.name, Encounter.external_id == data.external_id)
        )
        was_discharged = row is not None and row.discharged_at is not None
        if row is None:
            row = Encounter(id=uuid.uuid4(), source=self.manifest.name, external_id=data.external_id)
            self.session.add(row)
        row.patient_id = patient.id
        row.kind, row.status, row.location = data.kind, data.status, data.location
        row.admitted_at, row.discharged_at, row.disposition = data.admitted_at, data.discharged_at, data.disposition
        row.diagnoses = [{"system": c.system, "code": c.code, "display": c.display} for c in data.diagnoses]
        row.data_category = data.data_category
        await self.session.flush()
        self._audit("encounter.record", "Encounter", row.id, patient.id, status=row.status, kind=row.kind)
        if row.discharged_at is not None and not was_discharged and row.status != "cancelled":
            outbox.emit(
                self.session,
                "encounter.discharged",
                {"encounter_id": str(row.id), "patient_id": str(patient.id)},
                aggregate_id=patient.id,
            )

    async def record_condition(self, effect: fx.RecordCondition) -> None:
        data = effect.condition
        patient = await self._patient(data.patient)
        row = await self.session.scalar(
            select(Condition).where(Condition.source == self.manifest.name, Condition.external_id == data.external_id)
        )
        if row is None:
            row = Condition(id=uuid.uuid4(), source=self.manifest.name, external_id=data.external_id)
            self.session.add(row)
        row.patient_id = patient.id
        row.code_system, row.code, row.display = data.code.system, data.code.code, data.code.display
        row.clinical_status, row.onset_at, row.abated_at = data.clinical_status, data.onset, data.abatement
        row.data_category = data.data_category
        await self.session.flush()
        self._audit("condition.record", "Condition", row.id, patient.id)

    async def add_observation(self, effect: fx.AddObservation) -> None:
        data = effect.observation
        patient = await self._patient(data.patient)
        if data.effective_at > utcnow() + FUTURE_SLACK:
            raise ValueError("effective_at is in the future")
        row = await self.session.scalar(
            select(LabResult).where(LabResult.source == self.manifest.name, LabResult.external_id == data.external_id)
        )
        was_critical = row is not None and row.interpretation == "critical" and row.status != "cancelled"
        if row is None:
            row = LabResult(id=uuid.uuid4(), source=self.manifest.name, external_id=data.external_id)
            self.session.add(row)
        row.patient_id = patient.id
        row.code, row.display = data.code.code[:32], (data.code.display or data.code.code)[:200]
        row.value, row.unit, row.reference_range = data.value[:100], data.unit, data.reference_range
        row.interpretation, row.flag = INTERPRETATION[data.interpretation], data.interpretation
        row.status, row.category, row.effective_at = data.status, data.category, data.effective_at
        row.data_category = data.data_category
        await self.session.flush()
        self._audit("result.record", "Observation", row.id, patient.id, interpretation=row.interpretation)
        payload = {
            "result_id": str(row.id),
            "patient_id": str(patient.id),
            "code": row.code,
            "interpretation": row.interpretation,
            "status": row.status,
        }
        if row.interpretation == "critical" and row.status != "cancelled" and not was_critical:
            outbox.emit(self.session, "lab_result.critical_received", payload, aggregate_id=patient.id)

    async def create_task(self, effect: fx.CreateTask) -> None:
        patient = await self._patient(effect.patient)
        # The task remembers which effect made it, so a repeated effect makes it once.
        digest = hashlib.sha256(f"{self.manifest.name}\0{effect.dedupe_key}".encode()).hexdigest()[:40]
        key = f"plugin:{digest}"
        if await self.session.scalar(select(Task.id).where(Task.template_code == key)) is not None:
            return
        # Owned like the rules' tasks: the patient's care team lead, else a care manager, else an admin.
        owner = await lead_of(self.session, patient.id) or next(
            iter(await staff.holding(self.session, "care_manager", "tenant_admin")), None
        )
        if owner is None:
            raise LookupError("the tenant has no care manager or administrator to own the task")
        task = Task(
            id=uuid.uuid4(),
            patient_id=patient.id,
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


def kind_field(effect: fx.Effect) -> str:
    """The name of the payload field an effect carries (its data_category lives there)."""
    for name in ("encounter", "condition", "observation", "patient"):
        if hasattr(effect, name):
            return name
    return ""
