"""Every hookspec, exercised through the harness with a small plugin defined here (in the manner of datasette's
``test_hook_<name>`` tests; :func:`test_every_hook_has_a_test` fails when a hookspec has none).

Each plugin module is registered with pluggy against the hookspecs, as the host registers a plugin, so a hookimpl
with a parameter its hookspec lacks fails here. Each test checks what the harness makes of a sound result and that
a wrong one (of another type, or a hand-built payload that breaks its own types) raises ``WrongResult``.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pluggy
import pytest

from plugin_sdk import (
    PROJECT,
    AddObservation,
    Channel,
    CreateTask,
    HookSpecs,
    InboundResult,
    Manifest,
    OutboundMessage,
    PluginContext,
    PullBatch,
    RecordCondition,
    RecordEncounter,
    UpsertPatient,
    hookimpl,
)
from plugin_sdk.hookspecs import HOOK_NAMES, RESULT_TYPES
from plugin_sdk.payloads import (
    CarePlanPayload,
    Coding,
    ConditionRecord,
    DeviceReading,
    DeviceReadingBatch,
    EncounterRecord,
    Health,
    Identifier,
    InboundError,
    InboundMessage,
    JoinLink,
    ObservationRecord,
    PatientRecord,
    PatientRef,
    PushResult,
    RideBooking,
    RideQuote,
    RideRequest,
    RideStatus,
    ServiceQuery,
    ServiceRecord,
    TaskPayload,
    VisitBooking,
    VisitRequest,
)
from plugin_sdk.results import WrongResult
from plugin_sdk.testing import TEST_TENANT, PluginHarness

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NAIVE = datetime(2026, 1, 5, 9, 0)  # without a timezone: the harness refuses it
LOINC = "http://loinc.org"
PATIENT = PatientRef(identifiers=(Identifier(system="urn:test:mrn", value="MRN-1"),))
RIDE = RideRequest(
    id="ride-1",
    patient_name="Ana Souza",
    pickup={"line": "1 Main St", "city": "Harbor"},
    dropoff={"line": "St. Mary's Hospital", "city": "Harbor"},
    pickup_at=NOW,
)
HL7 = "MSH|^~\\&|EHR|STM|CAREHUB|NET|202601050900||ADT^A01|MSG0001|P|2.5\rPID|1||MRN-1||Souza^Ana||19600101|F"


def plugin(*functions: Callable[..., Any], **manifest: Any) -> ModuleType:
    """A plugin module with ``functions`` as its hookimpls (each named after its hook) and a manifest listing them;
    registered with pluggy against the hookspecs as the host registers one."""
    module = ModuleType(f"test_plugin_{functions[0].__name__}")
    for function in functions:
        setattr(module, function.__name__, hookimpl(function))
    fields = {"name": "hook_test", "version": "1.0.0", "sdk": ">=1.0,<2", "title": "Hook test", **manifest}
    module.MANIFEST = Manifest(hooks=tuple(f.__name__ for f in functions), **fields)  # type: ignore[attr-defined]
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(HookSpecs)
    manager.register(module)
    manager.check_pending()
    return module


async def assert_refused(hook: str, wrong: Any, **kwargs: Any) -> None:
    """A plugin whose ``hook`` returns ``wrong`` fails its call with ``WrongResult``."""
    if inspect.iscoroutinefunction(getattr(HookSpecs, hook)):

        async def impl(context: PluginContext) -> Any:
            return wrong
    else:

        def impl(context: PluginContext) -> Any:  # type: ignore[misc]
            return wrong

    impl.__name__ = hook
    async with PluginHarness(plugin(impl)) as hub:
        with pytest.raises(WrongResult, match=hook):
            await hub.call(hook, **kwargs)
        assert hub.results == []
        assert hub.effects == []


def test_every_hook_has_a_test() -> None:
    names = set(globals())
    missing = sorted(hook for hook in HOOK_NAMES if f"test_hook_{hook}" not in names)
    assert not missing, f"hooks without a test_hook_<name> in {__name__}: {missing}"
    unknown = sorted(n for n in names if n.startswith("test_hook_") and n.removeprefix("test_hook_") not in HOOK_NAMES)
    assert not unknown, f"tests of hooks that do not exist: {unknown}"


def test_every_hook_declares_what_it_returns() -> None:
    assert set(RESULT_TYPES) == set(HOOK_NAMES)


def test_a_hookimpl_with_a_parameter_its_hookspec_lacks_is_refused_by_pluggy() -> None:
    async def carehub_health_check(context: PluginContext, verbose: bool) -> Health:
        return Health(ok=True)

    with pytest.raises(pluggy.PluginValidationError, match="verbose"):
        plugin(carehub_health_check)


# -----------------------------------------------------------------------------------------------------------
# Lifecycle
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_on_enable() -> None:
    async def carehub_on_enable(context: PluginContext) -> None:
        if context.config["region"] not in ("north", "south"):
            raise ValueError(f"region {context.config['region']!r} is not one this service covers")

    schema = {"type": "object", "properties": {"region": {"type": "string"}}, "required": ["region"]}
    module = plugin(carehub_on_enable, config_schema=schema)
    async with PluginHarness(module, config={"region": "north"}) as hub:
        assert await hub.call("carehub_on_enable") is None
    async with PluginHarness(module, config={"region": "east"}) as hub:
        with pytest.raises(ValueError, match="east"):
            await hub.call("carehub_on_enable")
    # The host does not use the return value: the harness passes it on unchecked.
    await _passed_on("carehub_on_enable")


async def test_hook_carehub_on_disable() -> None:
    seen: list[str] = []

    async def carehub_on_disable(context: PluginContext) -> None:
        assert context.tenant is not None
        seen.append(context.tenant.slug)

    async with PluginHarness(plugin(carehub_on_disable)) as hub:
        assert await hub.call("carehub_on_disable") is None
    assert seen == [TEST_TENANT.slug]
    await _passed_on("carehub_on_disable")


async def test_hook_carehub_health_check() -> None:
    async def carehub_health_check(context: PluginContext) -> Health:
        return Health(ok=True, detail=f"checked at {context.now():%H:%M}")

    async with PluginHarness(plugin(carehub_health_check)) as hub:
        health = await hub.call("carehub_health_check")
    assert health == Health(ok=True, detail="checked at 09:00")
    await assert_refused("carehub_health_check", Health(ok="yes"))  # type: ignore[arg-type]
    await assert_refused("carehub_health_check", "healthy")


# -----------------------------------------------------------------------------------------------------------
# EHR connector: pulls
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_ehr_pull_patients() -> None:
    async def carehub_ehr_pull_patients(context: PluginContext, since: str | None) -> PullBatch:
        record = PatientRecord(
            identifiers=PATIENT.identifiers, given_name="Ana", family_name="Souza", birth_date=NOW.date()
        )
        return PullBatch(effects=[UpsertPatient(patient=record)], watermark="page-2", more=since is None)

    async with PluginHarness(plugin(carehub_ehr_pull_patients, data_categories=("demographics",))) as hub:
        first = await hub.call("carehub_ehr_pull_patients", since=None)
        second = await hub.call("carehub_ehr_pull_patients", since=first.watermark)
    assert (first.more, second.more) == (True, False)
    assert [effect.patient.family_name for effect in hub.effects] == ["Souza", "Souza"]
    await assert_refused("carehub_ehr_pull_patients", [UpsertPatient], since=None)  # a list, not a PullBatch


async def test_hook_carehub_ehr_pull_encounters() -> None:
    def encounter(admitted_at: datetime) -> RecordEncounter:
        record = EncounterRecord(external_id="enc-1", patient=PATIENT, kind="inpatient", admitted_at=admitted_at)
        return RecordEncounter(encounter=record)

    async def carehub_ehr_pull_encounters(since: str | None) -> PullBatch:  # context is optional, as any parameter
        return PullBatch(effects=[encounter(NOW)], watermark="2026-01-05T09:00:00Z")

    async with PluginHarness(plugin(carehub_ehr_pull_encounters)) as hub:
        batch = await hub.call("carehub_ehr_pull_encounters", since="2026-01-04T00:00:00Z")
    assert batch.effects[0].encounter.admitted_at == NOW
    assert isinstance(hub.effects[0], RecordEncounter)
    # A time without a timezone, deep inside the batch.
    await assert_refused(
        "carehub_ehr_pull_encounters", PullBatch(effects=[encounter(NAIVE)], watermark="w"), since=None
    )


async def test_hook_carehub_ehr_pull_conditions() -> None:
    condition = ConditionRecord(
        external_id="cond-1", patient=PATIENT, code=Coding(system="http://hl7.org/fhir/sid/icd-10-cm", code="I50.9")
    )

    async def carehub_ehr_pull_conditions(context: PluginContext, since: str | None) -> PullBatch:
        return PullBatch(effects=[RecordCondition(condition=condition)], watermark=None)

    async with PluginHarness(plugin(carehub_ehr_pull_conditions)) as hub:
        batch = await hub.call("carehub_ehr_pull_conditions", since=None)
    assert batch.effects[0].condition.code.code == "I50.9"
    await assert_refused("carehub_ehr_pull_conditions", PullBatch(effects=[], watermark=7), since=None)  # type: ignore[arg-type]


async def test_hook_carehub_ehr_pull_observations() -> None:
    def observation(interpretation: str) -> AddObservation:
        record = ObservationRecord(
            external_id="obs-1",
            patient=PATIENT,
            code=Coding(system=LOINC, code="2823-3", display="Potassium"),
            value="6.9",
            unit="mmol/L",
            interpretation=interpretation,  # type: ignore[arg-type]
            effective_at=NOW,
        )
        return AddObservation(observation=record)

    async def carehub_ehr_pull_observations(context: PluginContext, since: str | None) -> PullBatch:
        return PullBatch(effects=[observation("critical_high")], watermark="w2")

    async with PluginHarness(plugin(carehub_ehr_pull_observations)) as hub:
        await hub.call("carehub_ehr_pull_observations", since="w1")
    assert hub.effects[0].observation.interpretation == "critical_high"  # type: ignore[attr-defined]
    await assert_refused(
        "carehub_ehr_pull_observations", PullBatch(effects=[observation("alarming")], watermark="w"), since=None
    )


# -----------------------------------------------------------------------------------------------------------
# EHR connector: pushes
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_ehr_push_care_plan() -> None:
    care_plan = CarePlanPayload(id="cp-1", patient=PATIENT, title="Heart failure", status="active", updated_at=NOW)

    async def carehub_ehr_push_care_plan(context: PluginContext, care_plan: CarePlanPayload) -> PushResult:
        return PushResult(
            external_id=f"ehr-{care_plan.id}", location=f"https://ehr.example.org/CarePlan/{care_plan.id}"
        )

    module = plugin(carehub_ehr_push_care_plan, data_categories=("care_plan",))
    async with PluginHarness(module) as hub:
        result = await hub.call("carehub_ehr_push_care_plan", care_plan=care_plan)
    assert result == PushResult(external_id="ehr-cp-1", location="https://ehr.example.org/CarePlan/cp-1")
    assert hub.effects == []
    await assert_refused("carehub_ehr_push_care_plan", "pushed", care_plan=care_plan)


async def test_hook_carehub_ehr_push_task() -> None:
    task = TaskPayload(id="task-1", patient=PATIENT, title="Call", status="requested", updated_at=NOW)

    async def carehub_ehr_push_task(context: PluginContext, task: TaskPayload) -> PushResult:
        return PushResult(external_id=f"ehr-{task.id}")

    async with PluginHarness(plugin(carehub_ehr_push_task, data_categories=("tasks_appointments",))) as hub:
        assert (await hub.call("carehub_ehr_push_task", task=task)).external_id == "ehr-task-1"
    await assert_refused("carehub_ehr_push_task", PushResult(external_id=123), task=task)  # type: ignore[arg-type]


# -----------------------------------------------------------------------------------------------------------
# Inbound feeds
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_inbound_message() -> None:
    def carehub_inbound_message(context: PluginContext, message: InboundMessage) -> InboundResult | None:
        if message.content_type != "application/hl7-v2":
            return None
        segments = {line.split("|", 1)[0]: line.split("|") for line in message.text.split("\r")}
        if "PID" not in segments:
            return InboundResult(control_id=segments["MSH"][9], error=InboundError(text="no PID", location="PID"))
        family, given = segments["PID"][5].split("^")[:2]
        birth = datetime.strptime(segments["PID"][7], "%Y%m%d").date()
        record = PatientRecord(identifiers=PATIENT.identifiers, given_name=given, family_name=family, birth_date=birth)
        return InboundResult(control_id=segments["MSH"][9], effects=[UpsertPatient(patient=record)], summary="ADT^A01")

    message = InboundMessage(id="in-1", content_type="application/hl7-v2", text=HL7, received_at=NOW)
    json_body = InboundMessage(id="in-2", content_type="application/json", text="{}", received_at=NOW)
    async with PluginHarness(plugin(carehub_inbound_message, data_categories=("demographics",))) as hub:
        result = await hub.call("carehub_inbound_message", message=message)
        assert await hub.call("carehub_inbound_message", message=json_body) is None
    assert (result.control_id, result.summary) == ("MSG0001", "ADT^A01")
    assert hub.effects[0].patient.family_name == "Souza"  # type: ignore[attr-defined]
    await assert_refused("carehub_inbound_message", {"control_id": 1}, message=message)


async def test_hook_carehub_inbound_reply() -> None:
    codes = {"accepted": "AA", "error": "AE", "rejected": "AR"}

    def carehub_inbound_reply(message: InboundMessage, outcome: str, error: str | None) -> str | None:
        return f"MSH|^~\\&|CAREHUB||||||ACK|{message.id}|P|2.5\rMSA|{codes[outcome]}|{message.id}|{error or ''}"

    message = InboundMessage(id="in-1", content_type="application/hl7-v2", text=HL7, received_at=NOW)
    async with PluginHarness(plugin(carehub_inbound_reply)) as hub:
        ack = await hub.call("carehub_inbound_reply", message=message, outcome="error", error="PID-7 is not a date")
    assert ack.endswith("MSA|AE|in-1|PID-7 is not a date")
    await assert_refused("carehub_inbound_reply", 42, message=message, outcome="accepted", error=None)


async def test_hook_carehub_device_observations() -> None:
    batch = DeviceReadingBatch(
        patient=PATIENT,
        readings=(
            DeviceReading(
                device_id="scale-1", code=Coding(system=LOINC, code="29463-7"), value="84.2", unit="kg", measured_at=NOW
            ),
        ),
    )

    async def carehub_device_observations(context: PluginContext, batch: DeviceReadingBatch) -> list[Any]:
        reading = batch.readings[0]
        record = ObservationRecord(
            external_id=f"{reading.device_id}/{reading.measured_at.isoformat()}",
            patient=batch.patient,
            code=reading.code,
            value=reading.value,
            unit=reading.unit,
            category="device",
            effective_at=reading.measured_at,
        )
        title = "Weight gain: check for fluid retention"
        return [AddObservation(observation=record), CreateTask(patient=batch.patient, title=title, dedupe_key="w1")]

    module = plugin(carehub_device_observations, data_categories=("clinical_results", "tasks_appointments"))
    async with PluginHarness(module) as hub:
        effects = await hub.call("carehub_device_observations", batch=batch)
    assert [type(effect) for effect in effects] == [AddObservation, CreateTask]
    assert hub.effects == effects
    await assert_refused("carehub_device_observations", [{"kind": "drop_table"}], batch=batch)


# -----------------------------------------------------------------------------------------------------------
# Community resource directory
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_directory_search() -> None:
    async def carehub_directory_search(context: PluginContext, query: ServiceQuery) -> list[ServiceRecord]:
        services = [
            ServiceRecord(id=s["id"], name=s["name"], organization="Harbor") for s in context.config["services"]
        ]
        return [s for s in services if query.text and query.text.lower() in s.name.lower()][: query.limit]

    schema = {"type": "object", "properties": {"services": {"type": "array"}}}
    config = {"services": [{"id": "s1", "name": "Food pantry"}, {"id": "s2", "name": "Night shelter"}]}
    async with PluginHarness(plugin(carehub_directory_search, config_schema=schema), config=config) as hub:
        found = await hub.call("carehub_directory_search", query=ServiceQuery(text="pantry"))
    assert [record.id for record in found] == ["s1"]
    one = ServiceRecord(id="s1", name="Food pantry", organization="Harbor")
    await assert_refused("carehub_directory_search", one, query=ServiceQuery(text="food"))  # one, not a list


# -----------------------------------------------------------------------------------------------------------
# Telehealth
# -----------------------------------------------------------------------------------------------------------

VISIT = VisitRequest(
    appointment_id="appt-1", starts_at=NOW, ends_at=NOW + timedelta(minutes=30), host_name="Dr. Lee", patient_name="Ana"
)


async def test_hook_carehub_telehealth_create_visit() -> None:
    async def carehub_telehealth_create_visit(context: PluginContext, visit: VisitRequest) -> VisitBooking:
        return VisitBooking(visit_id=f"v-{visit.appointment_id}", host_url="https://video.example.org/h/1")

    async with PluginHarness(plugin(carehub_telehealth_create_visit)) as hub:
        booking = await hub.call("carehub_telehealth_create_visit", visit=VISIT)
    assert booking.visit_id == "v-appt-1"
    await assert_refused("carehub_telehealth_create_visit", VisitBooking(visit_id=None, host_url="x"), visit=VISIT)  # type: ignore[arg-type]


async def test_hook_carehub_telehealth_cancel_visit() -> None:
    cancelled: list[str] = []

    async def carehub_telehealth_cancel_visit(context: PluginContext, visit_id: str) -> None:
        cancelled.append(visit_id)

    async with PluginHarness(plugin(carehub_telehealth_cancel_visit)) as hub:
        assert await hub.call("carehub_telehealth_cancel_visit", visit_id="v-appt-1") is None
    assert cancelled == ["v-appt-1"]
    await _passed_on("carehub_telehealth_cancel_visit", visit_id="v-appt-1")


async def test_hook_carehub_telehealth_join_link() -> None:
    async def carehub_telehealth_join_link(context: PluginContext, visit_id: str, participant: str) -> JoinLink:
        return JoinLink(url=f"https://video.example.org/{visit_id}/{participant}", expires_at=context.now())

    async with PluginHarness(plugin(carehub_telehealth_join_link)) as hub:
        link = await hub.call("carehub_telehealth_join_link", visit_id="v1", participant="patient")
        hub.clock.advance(hours=1)
        later = await hub.call("carehub_telehealth_join_link", visit_id="v1", participant="host")
    assert link.url.endswith("/v1/patient")
    assert later.expires_at - link.expires_at == timedelta(hours=1)
    naive = JoinLink(url="https://video.example.org/v1", expires_at=NAIVE)
    await assert_refused("carehub_telehealth_join_link", naive, visit_id="v1", participant="host")


# -----------------------------------------------------------------------------------------------------------
# Transport
# -----------------------------------------------------------------------------------------------------------


async def test_hook_carehub_transport_quote() -> None:
    async def carehub_transport_quote(context: PluginContext, ride: RideRequest) -> list[RideQuote]:
        price = 4500 if ride.wheelchair else 2500
        return [
            RideQuote(quote_id=f"q-{ride.id}", provider="Harbor Rides", pickup_at=ride.pickup_at, price_cents=price)
        ]

    async with PluginHarness(plugin(carehub_transport_quote)) as hub:
        (quote,) = await hub.call("carehub_transport_quote", ride=RIDE)
    assert (quote.quote_id, quote.price_cents) == ("q-ride-1", 2500)
    await assert_refused("carehub_transport_quote", [RideQuote(quote_id="q", provider="p", pickup_at=NAIVE)], ride=RIDE)


async def test_hook_carehub_transport_book() -> None:
    async def carehub_transport_book(context: PluginContext, ride: RideRequest, quote_id: str) -> RideBooking:
        return RideBooking(booking_id=f"b-{ride.id}-{quote_id}", status="booked", pickup_at=ride.pickup_at)

    async with PluginHarness(plugin(carehub_transport_book)) as hub:
        booking = await hub.call("carehub_transport_book", ride=RIDE, quote_id="q-ride-1")
    assert (booking.booking_id, booking.status) == ("b-ride-1-q-ride-1", "booked")
    await assert_refused("carehub_transport_book", RideBooking(booking_id="b", status="lost"), ride=RIDE, quote_id="q")  # type: ignore[arg-type]


async def test_hook_carehub_transport_cancel() -> None:
    async def carehub_transport_cancel(context: PluginContext, booking_id: str) -> RideBooking:
        return RideBooking(booking_id=booking_id, status="cancelled")

    async with PluginHarness(plugin(carehub_transport_cancel)) as hub:
        assert (await hub.call("carehub_transport_cancel", booking_id="b-1")).status == "cancelled"
    await assert_refused("carehub_transport_cancel", None, booking_id="b-1")


async def test_hook_carehub_transport_status_callback() -> None:
    def carehub_transport_status_callback(
        context: PluginContext, body: bytes, headers: Mapping[str, str]
    ) -> RideStatus | None:
        expected = hmac.new(context.config["secret"].encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-signature", "")):
            return None
        booking_id, status = body.decode().split(":")
        return RideStatus(booking_id=booking_id, status=status, at=context.now())  # type: ignore[arg-type]

    schema = {"type": "object", "properties": {"secret": {"type": "string", "sensitive": True}}}
    module = plugin(carehub_transport_status_callback, config_schema=schema)
    body = b"b-1:en_route"
    signature = hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    async with PluginHarness(module, config={"secret": "s3cret-value"}) as hub:
        status = await hub.call("carehub_transport_status_callback", body=body, headers={"x-signature": signature})
        forged = await hub.call("carehub_transport_status_callback", body=body, headers={"x-signature": "0" * 64})
    assert status == RideStatus(booking_id="b-1", status="en_route", at=hub.clock.current)
    assert forged is None
    assert module.MANIFEST.sensitive_keys == ("secret",)
    wrong = RideStatus(booking_id="b-1", status="en_route", at=NAIVE)
    await assert_refused("carehub_transport_status_callback", wrong, body=body, headers={})


# -----------------------------------------------------------------------------------------------------------
# Notification channels (operator-configured, network-wide)
# -----------------------------------------------------------------------------------------------------------


class PagerChannel(Channel):
    name = "pager"
    address_kind = "phone"
    max_detail = "none"

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, message: OutboundMessage) -> str | None:
        return message.id


async def test_hook_carehub_notification_channels() -> None:
    def carehub_notification_channels(config: Mapping[str, str]) -> list[Channel]:
        if not config.get("pager_url"):
            return []
        if not config["pager_url"].startswith("https://"):
            raise ValueError("pager_url must be an https:// URL")
        return [PagerChannel(config["pager_url"])]

    module = plugin(carehub_notification_channels, operator_settings=("pager_url",), per_tenant=False)
    async with PluginHarness(module) as hub:
        (channel,) = await hub.call("carehub_notification_channels", config={"pager_url": "https://pager.example"})
        assert await hub.call("carehub_notification_channels", config={}) == []
        with pytest.raises(ValueError, match="pager_url"):
            await hub.call("carehub_notification_channels", config={"pager_url": "http://pager.example"})
    assert isinstance(channel, PagerChannel) and channel.url == "https://pager.example"
    # The host checks that each item is a Channel; the harness passes the list on as it is.
    assert RESULT_TYPES["carehub_notification_channels"] is None


async def _passed_on(hook: str, **kwargs: Any) -> None:
    """A hook whose return value the host does not use: the harness hands on whatever it returns."""

    async def impl(context: PluginContext) -> Any:
        return "ignored"

    impl.__name__ = hook
    async with PluginHarness(plugin(impl)) as hub:
        assert await hub.call(hook, **kwargs) == "ignored"
    assert RESULT_TYPES[hook] is None
