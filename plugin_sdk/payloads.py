"""What carehub and plugins hand each other: plain, typed, versioned structures, never ORM objects.

Every payload is a frozen :class:`msgspec.Struct` with keyword-only fields. ``VERSION`` is the payload's version:
a field may be added (with a default) without a new version; a field is never removed or retyped within a major
SDK version. The host validates what a hook returns against these types (:func:`msgspec.convert`), so a plugin
that returns garbage is contained, not trusted.

Times are timezone-aware ``datetime`` values (the host refuses naive ones); codes carry their system, as FHIR's
``Coding`` does.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

import msgspec

# The data categories a plugin may receive (its manifest names them); the same words as carehub's consent.
DATA_CATEGORIES = (
    "demographics",
    "care_plan",
    "tasks_appointments",
    "messages",
    "clinical_results",
    "behavioral_health",
    "substance_use_disorder",
    "social_needs",
)
# Labels that make a record sensitive: such a record reaches a plugin only if its manifest names the label too.
SENSITIVE_LABELS = ("behavioral_health", "substance_use_disorder", "social_needs")
# A time with its timezone: the host refuses naive times.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
SensitiveLabel = Literal["behavioral_health", "substance_use_disorder", "social_needs"]


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    VERSION: ClassVar[int] = 1


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


class Identifier(Payload, frozen=True, kw_only=True):
    """An identifier of a patient in a system: ``system`` is a URI (the EHR's MRN namespace, a national id's)."""

    system: str
    value: str


class Coding(Payload, frozen=True, kw_only=True):
    """A code in a code system (LOINC, SNOMED CT, ICD-10-CM, HL7 tables): as FHIR's ``Coding``."""

    system: str
    code: str
    display: str | None = None


class PatientRef(Payload, frozen=True, kw_only=True):
    """Which patient a record belongs to, as the sending system knows them: at least one identifier. The host
    finds the tenant's patient by these identifiers (the same ones an :class:`PatientRecord` was upserted with)."""

    identifiers: tuple[Identifier, ...]


class TenantInfo(Payload, frozen=True, kw_only=True):
    """The tenant a hook is called for."""

    id: str
    slug: str
    name: str
    kind: Literal["hospital", "clinic", "partner"]


# ---------------------------------------------------------------------------------------------------------------
# Clinical records coming in (EHR connectors, inbound feeds)
# ---------------------------------------------------------------------------------------------------------------


class PatientRecord(Payload, frozen=True, kw_only=True):
    """A patient as the sending system holds them. ``identifiers`` match the tenant's existing patient (any one
    identifier in common); the first identifier is the medical record number when no patient exists yet."""

    identifiers: tuple[Identifier, ...]
    given_name: str
    family_name: str
    birth_date: date
    sex: Literal["female", "male", "other", "unknown"] = "unknown"
    phone: str | None = None
    email: str | None = None
    address: dict[str, str] | None = None  # line, city, state, postal_code, country
    language: str | None = None
    active: bool = True


class EncounterRecord(Payload, frozen=True, kw_only=True):
    """A stay or visit. ``external_id`` (unique in the sending system) makes a repeated message an update."""

    external_id: str
    patient: PatientRef
    kind: Literal["inpatient", "emergency", "observation"]
    status: Literal["planned", "in-progress", "finished", "cancelled"] = "in-progress"
    admitted_at: AwareDatetime
    discharged_at: AwareDatetime | None = None
    disposition: Literal["home", "home_health", "skilled_nursing", "rehabilitation", "hospice", "other"] | None = None
    diagnoses: tuple[Coding, ...] = ()
    location: str | None = None
    data_category: SensitiveLabel | None = None


class ConditionRecord(Payload, frozen=True, kw_only=True):
    """A problem or diagnosis on the patient's list."""

    external_id: str
    patient: PatientRef
    code: Coding
    clinical_status: Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] = "active"
    onset: AwareDatetime | None = None
    abatement: AwareDatetime | None = None
    data_category: SensitiveLabel | None = None


Interpretation = Literal["normal", "abnormal", "low", "high", "critical_low", "critical_high", "critical"]


class ObservationRecord(Payload, frozen=True, kw_only=True):
    """A lab result, a vital sign or a device reading. ``interpretation`` is the sender's flag (HL7 table 0078 or
    FHIR's ObservationInterpretation mapped); a critical one raises carehub's critical-result alert."""

    external_id: str
    patient: PatientRef
    code: Coding  # LOINC where the sender has it
    value: str
    unit: str | None = None
    reference_range: str | None = None
    interpretation: Interpretation = "normal"
    status: Literal["preliminary", "final", "corrected", "cancelled"] = "final"
    category: Literal["laboratory", "vital-signs", "device"] = "laboratory"
    effective_at: AwareDatetime
    data_category: SensitiveLabel | None = None


class MedicationRecord(Payload, frozen=True, kw_only=True):
    """A medication the sender knows the patient takes (room for the network medication list to come: today the
    host does not store it, and no effect carries it yet)."""

    external_id: str
    patient: PatientRef
    code: Coding  # RxNorm where the sender has it
    dose: str | None = None
    status: Literal["active", "completed", "stopped", "on-hold"] = "active"
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None


# ---------------------------------------------------------------------------------------------------------------
# carehub's records going out (EHR push)
# ---------------------------------------------------------------------------------------------------------------


class CarePlanPayload(Payload, frozen=True, kw_only=True):
    """A care plan carehub pushes to the EHR. ``patient`` carries the identifiers the tenant holds for them."""

    id: str
    patient: PatientRef
    title: str
    status: Literal["draft", "active", "on-hold", "completed", "revoked"]
    period_start: date | None = None
    period_end: date | None = None
    goals: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()
    updated_at: AwareDatetime


class TaskPayload(Payload, frozen=True, kw_only=True):
    """A task carehub pushes to the EHR."""

    id: str
    patient: PatientRef | None
    title: str
    description: str | None = None
    status: Literal["requested", "accepted", "in_progress", "completed", "cancelled", "failed"]
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    due_at: AwareDatetime | None = None
    updated_at: AwareDatetime


class PushResult(Payload, frozen=True, kw_only=True):
    """Where the pushed record now lives in the other system (its id there, a URL), if it says."""

    external_id: str | None = None
    location: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Inbound feeds
# ---------------------------------------------------------------------------------------------------------------


class InboundMessage(Payload, frozen=True, kw_only=True):
    """One message as received (an HL7 v2 message off an MLLP connection, a webhook's body), before any parsing.
    ``content_type`` names the format: ``application/hl7-v2`` for HL7 v2 ER7 text."""

    id: str  # carehub's id for this receipt
    content_type: str
    text: str
    received_at: AwareDatetime
    peer: str | None = None  # the sending address, for the review list


class InboundError(Payload, frozen=True, kw_only=True):
    """Why a message cannot be applied. ``reject``: the message itself can never be accepted (HL7 ``AR``);
    otherwise it is in error (``AE``). ``location`` names the place (``PID-7``, ``OBX[2]-5``)."""

    text: str
    location: str | None = None
    code: str | None = None
    reject: bool = False


class DeviceReading(Payload, frozen=True, kw_only=True):
    """A measurement from a wearable or home monitor."""

    device_id: str
    code: Coding
    value: str
    unit: str | None = None
    measured_at: AwareDatetime


class DeviceReadingBatch(Payload, frozen=True, kw_only=True):
    """Readings of one patient from one feed (a vendor's webhook, a hub's upload)."""

    patient: PatientRef
    readings: tuple[DeviceReading, ...]


# ---------------------------------------------------------------------------------------------------------------
# Community resource directory (Open Referral HSDS shaped)
# ---------------------------------------------------------------------------------------------------------------


class ServiceQuery(Payload, frozen=True, kw_only=True):
    """What a coordinator looks for: free text, a category (food, housing, transport ...), near a place."""

    text: str | None = None
    category: str | None = None
    postal_code: str | None = None
    radius_km: float | None = None
    language: str | None = None
    limit: int = 20


class ServiceRecord(Payload, frozen=True, kw_only=True):
    """One service at a location, in the manner of HSDS's service_at_location."""

    id: str
    name: str
    organization: str
    description: str | None = None
    categories: tuple[str, ...] = ()
    address: dict[str, str] | None = None
    phone: str | None = None
    url: str | None = None
    hours: str | None = None
    languages: tuple[str, ...] = ()
    eligibility: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Telehealth
# ---------------------------------------------------------------------------------------------------------------


class VisitRequest(Payload, frozen=True, kw_only=True):
    """A video visit to set up for an appointment. Names only, never clinical content."""

    appointment_id: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    host_name: str
    patient_name: str


class VisitBooking(Payload, frozen=True, kw_only=True):
    visit_id: str
    host_url: str
    patient_url: str | None = None


class JoinLink(Payload, frozen=True, kw_only=True):
    url: str
    expires_at: AwareDatetime | None = None


# ---------------------------------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------------------------------


class RideRequest(Payload, frozen=True, kw_only=True):
    """A ride for a patient to or from care: places and times, the patient's name and phone, and their mobility
    needs. Never a diagnosis or the reason for the visit."""

    id: str  # carehub's request id: use it as the idempotency key with the provider
    patient_name: str
    patient_phone: str | None = None
    pickup: dict[str, str]
    dropoff: dict[str, str]
    pickup_at: AwareDatetime
    wheelchair: bool = False
    companions: int = 0


class RideQuote(Payload, frozen=True, kw_only=True):
    quote_id: str
    provider: str
    pickup_at: AwareDatetime
    price_cents: int | None = None
    currency: str | None = None
    expires_at: AwareDatetime | None = None


class RideBooking(Payload, frozen=True, kw_only=True):
    booking_id: str
    status: Literal["booked", "driver_assigned", "en_route", "arrived", "completed", "cancelled", "no_show"]
    pickup_at: AwareDatetime | None = None
    tracking_url: str | None = None


class RideStatus(Payload, frozen=True, kw_only=True):
    """What a provider's status callback says about a booking."""

    booking_id: str
    status: Literal["booked", "driver_assigned", "en_route", "arrived", "completed", "cancelled", "no_show"]
    at: AwareDatetime


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------------------------


class Health(Payload, frozen=True, kw_only=True):
    """A plugin's own view of whether it can work for this tenant (its credentials accepted, its peer up)."""

    ok: bool
    detail: str | None = None


# Every payload type and its version, for the reference and for a plugin that wants to check what it builds on.
PAYLOAD_VERSIONS: dict[str, int] = {
    cls.__name__: cls.VERSION
    for cls in (
        Identifier,
        Coding,
        PatientRef,
        TenantInfo,
        PatientRecord,
        EncounterRecord,
        ConditionRecord,
        ObservationRecord,
        MedicationRecord,
        CarePlanPayload,
        TaskPayload,
        PushResult,
        InboundMessage,
        InboundError,
        DeviceReading,
        DeviceReadingBatch,
        ServiceQuery,
        ServiceRecord,
        VisitRequest,
        VisitBooking,
        JoinLink,
        RideRequest,
        RideQuote,
        RideBooking,
        RideStatus,
        Health,
    )
}
