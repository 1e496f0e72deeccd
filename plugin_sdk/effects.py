"""What a hook asks the host to do. A plugin never writes to the database: it returns effects, and the host
validates each and applies them inside the tenant's transaction, audited as the plugin.

Effects are a tagged union (``kind``): a hook returns a list of them (or a structure holding one, such as
:class:`PullBatch`). The host applies a batch all or nothing: one invalid effect (a patient it cannot find, a
time without a timezone, a category the plugin's manifest does not declare) rejects the batch with its index.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from plugin_sdk.payloads import (
    AwareDatetime,
    ConditionRecord,
    EncounterRecord,
    InboundError,
    ObservationRecord,
    PatientRecord,
    PatientRef,
)


class Effect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    VERSION: ClassVar[int] = 1
    # The data category an effect writes: the plugin's manifest must declare it.
    CATEGORY: ClassVar[str]


class UpsertPatient(Effect, tag="upsert_patient", frozen=True, kw_only=True):
    """Create the tenant's patient, or update the one an identifier matches (new identifiers are added; the
    network's record linking then considers them).

    ``keep_missing``: a contact field the record leaves out (``None``: phone, email, address, language) keeps
    the value carehub holds instead of clearing it. HL7 v2 means that by an empty field (a result's PID seldom
    repeats the address); a FHIR Patient is the whole record, so the default is False.
    """

    CATEGORY = "demographics"
    patient: PatientRecord
    keep_missing: bool = False


class MergePatient(Effect, tag="merge_patient", frozen=True, kw_only=True):
    """The sender merged two records of one person (HL7 ADT^A40): ``merged`` (the prior identifiers, MRG-1) is
    folded into ``surviving`` (PID-3). The host moves the merged patient's encounters, conditions and observations
    to the survivor, adds its identifiers there and deactivates it; the audit event lists what moved, so a privacy
    officer can undo it. A merged patient the tenant does not hold is nothing to do."""

    CATEGORY = "demographics"
    surviving: PatientRef
    merged: PatientRef


class RecordEncounter(Effect, tag="record_encounter", frozen=True, kw_only=True):
    """Create or update (by ``external_id``) an encounter. A discharge (``discharged_at`` set for the first time)
    raises carehub's ``encounter.discharged`` event, which the transition-of-care rule acts on."""

    CATEGORY = "clinical_results"
    encounter: EncounterRecord


class RecordCondition(Effect, tag="record_condition", frozen=True, kw_only=True):
    """Create or update (by ``external_id``) a condition on the patient's problem list."""

    CATEGORY = "clinical_results"
    condition: ConditionRecord


class AddObservation(Effect, tag="add_observation", frozen=True, kw_only=True):
    """Create or update (by ``external_id``) an observation. A new critical one raises
    ``lab_result.critical_received`` (the critical-result alert)."""

    CATEGORY = "clinical_results"
    observation: ObservationRecord


class CreateTask(Effect, tag="create_task", frozen=True, kw_only=True):
    """A task for the tenant's care team about a patient (unassigned: the team's queue). ``dedupe_key`` makes a
    repeated effect create the task once."""

    CATEGORY = "tasks_appointments"
    patient: PatientRef
    title: str
    description: str | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    due_at: AwareDatetime | None = None
    dedupe_key: str


AnyEffect = UpsertPatient | MergePatient | RecordEncounter | RecordCondition | AddObservation | CreateTask
EFFECT_TYPES: tuple[type[Effect], ...] = (
    UpsertPatient,
    MergePatient,
    RecordEncounter,
    RecordCondition,
    AddObservation,
    CreateTask,
)


class PullBatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One page of a pull: the effects, the watermark to pass next time (the host stores it only once the effects
    are applied), and whether more is waiting now (the host calls again at once)."""

    VERSION: ClassVar[int] = 1
    effects: list[AnyEffect]
    watermark: str | None
    more: bool = False


class InboundResult(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a message means. ``control_id`` is the sender's id for it (HL7 MSH-10): a message whose control id
    was already applied is answered and not applied again. ``error`` set: the message is not applied, kept for
    review, and answered with :func:`carehub_inbound_reply`'s error reply."""

    VERSION: ClassVar[int] = 1
    control_id: str | None
    effects: list[AnyEffect] = msgspec.field(default_factory=list)
    error: InboundError | None = None
    summary: str | None = None  # e.g. "ADT^A03 discharge", shown in the admin's message list
