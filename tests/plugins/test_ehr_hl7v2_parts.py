"""The ehr_hl7v2 plugin's behaviour beyond the corpus table: discharge dispositions, configured critical flags,
identifier systems, unescaping, tolerated line breaks, the configuration schema, ACKs for what the host decided,
and inputs that must not make a hook raise."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import plugins.ehr_hl7v2 as ehr_hl7v2
from plugin_sdk import AddObservation, InboundResult, RecordEncounter, UpsertPatient
from plugin_sdk.payloads import Identifier
from plugin_sdk.testing import ConfigRefused, PluginHarness
from tests.plugins.test_ehr_hl7v2 import CONFIGS, corpus_text, inbound, parse_ack

EPIC, CERNER = CONFIGS["epic"], CONFIGS["cerner"]
EASTERN = timezone(timedelta(hours=-5))


async def read(text: str, config: dict[str, Any] | None = None) -> InboundResult:
    async with PluginHarness(ehr_hl7v2, config=EPIC if config is None else config) as hub:
        result: InboundResult = await hub.call("carehub_inbound_message", message=inbound(text))
    return result


async def reply(text: str, outcome: str, error: str | None = None, config: dict[str, Any] | None = None) -> Any:
    async with PluginHarness(ehr_hl7v2, config=EPIC if config is None else config) as hub:
        answer = await hub.call("carehub_inbound_reply", message=inbound(text), outcome=outcome, error=error)
    return parse_ack(answer)


def with_field(text: str, segment: str, field: int, value: str) -> str:
    """``text`` with field ``field`` of its first ``segment`` set to ``value``."""
    lines = text.split("\r")
    for index, line in enumerate(lines):
        if line.startswith(segment + "|"):
            fields = line.split("|")
            fields += [""] * (field + 1 - len(fields))
            fields[field] = value
            lines[index] = "|".join(fields)
            break
    return "\r".join(lines)


async def test_a_discharge_carries_its_time_disposition_and_diagnoses() -> None:
    result = await read(corpus_text("epic_adt_a03_discharge_home_v251.hl7"))
    patient, stay = result.effects
    assert isinstance(patient, UpsertPatient) and isinstance(stay, RecordEncounter)
    assert stay.encounter.discharged_at == datetime(2026, 1, 8, 14, 15, tzinfo=EASTERN)
    assert stay.encounter.admitted_at == datetime(2026, 1, 5, 8, 0, tzinfo=EASTERN)
    assert (stay.encounter.status, stay.encounter.disposition) == ("finished", "home")
    assert stay.encounter.patient.identifiers == patient.patient.identifiers
    assert result.summary == "ADT^A03 discharge of E1000001"


@pytest.mark.parametrize(
    ("code", "disposition"),
    [
        ("01", "home"),
        ("1", "home"),
        ("06", "home_health"),
        ("03", "skilled_nursing"),
        ("62", "rehabilitation"),
        ("50", "hospice"),
        ("51", "hospice"),
        ("07", "other"),
        ("20", "other"),
        ("", None),
    ],
)
async def test_discharge_dispositions(code: str, disposition: str | None) -> None:
    text = with_field(corpus_text("epic_adt_a03_discharge_home_v251.hl7"), "PV1", 36, code)
    stay = (await read(text)).effects[1]
    assert isinstance(stay, RecordEncounter) and stay.encounter.disposition == disposition


async def test_a_discharge_without_pv1_45_takes_the_event_time() -> None:
    text = with_field(corpus_text("epic_adt_a03_discharge_home_v251.hl7"), "PV1", 45, "")
    stay = (await read(text)).effects[1]
    assert isinstance(stay, RecordEncounter)
    assert stay.encounter.discharged_at == datetime(2026, 1, 8, 14, 30, tzinfo=EASTERN)  # EVN-2


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, ["critical_high", "critical_low", "critical", "high"]),
        (["AA"], ["high", "low", "critical", "high"]),
        (["HH", "LL", "AA", ">"], ["critical_high", "critical_low", "critical", "critical_high"]),
        ([], ["high", "low", "abnormal", "high"]),
    ],
)
async def test_the_configured_critical_flags_decide(flags: list[str] | None, expected: list[str]) -> None:
    config = dict(EPIC) if flags is None else {**EPIC, "critical_flags": flags}
    result = await read(corpus_text("epic_oru_r01_critical_v251.hl7"), config)
    readings = [e.observation.interpretation for e in result.effects if isinstance(e, AddObservation)]
    assert readings == expected


async def test_identifiers_from_every_repetition_mrn_first_each_system_resolved() -> None:
    cerner = (await read(corpus_text("cerner_adt_a01_inpatient_v231.hl7"), CERNER)).effects[0]
    assert isinstance(cerner, UpsertPatient)
    assert cerner.patient.identifiers == (  # the CMRN came first in PID-3; the MRN leads
        Identifier(system="urn:oid:2.16.840.1.113883.3.8888.1", value="2000001"),
        Identifier(system="urn:carehub:hl7v2:authority:SAINTFAKE_CMRN", value="99990001"),
    )
    text = with_field(
        corpus_text("epic_adt_a08_update_v251.hl7"),
        "PID",
        3,
        "E1000001^^^GOODHOSP^MR~E1000001^^^GOODHOSP^MR~77^^^&2.16.840.1.113883.3.1&ISO^PI~88^^^^PI",
    )
    epic = (await read(text, {"identifier_system": "urn:example:mrn"})).effects[0]
    assert isinstance(epic, UpsertPatient)
    assert [(i.system, i.value) for i in epic.patient.identifiers] == [
        ("urn:carehub:hl7v2:authority:GOODHOSP", "E1000001"),  # repeated: once
        ("urn:oid:2.16.840.1.113883.3.1", "77"),  # universal id typed ISO
        ("urn:example:mrn", "88"),  # no authority: the configured system
    ]


async def test_escapes_and_formatting_are_undone() -> None:
    result = await read(corpus_text("meditech_oru_r01_narrative_v23.hl7"), CONFIGS["meditech"])
    values = [e.observation.value for e in result.effects if isinstance(e, AddObservation)]
    assert values == [
        "FINAL DIAGNOSIS:\nBenign tissue, no malignancy seen.\nMargins | clear.",
        "Line one\nLine two & more\nRatio 1^2 \\ done",
        "Specimen received\nat lab ~ logged urgent",
    ]
    legacy = await read(corpus_text("legacy_oru_custom_escape_v23.hl7"))  # MSH-2 ^~!&: "!" escapes, "\" is text
    first = legacy.effects[1]
    assert isinstance(first, AddObservation)
    assert first.observation.value == "Sample hemolyzed & recollected, see C:\\LAB\\01"


async def test_segment_terminators_blank_lines_and_framing_residue_read_alike() -> None:
    text = corpus_text("epic_oru_r01_cbc_v251.hl7")
    expected = (await read(text)).effects
    segments = text.rstrip("\r").split("\r")
    for variant in (
        "\n".join(segments),
        "\r\n".join(segments) + "\r\n",
        "\ufeff\x0b" + "\r\n\r\n".join(segments) + "\x1c\r",
        "\r".join(segments[:3]) + "\n" + "\r\n".join(segments[3:]),
    ):
        assert (await read(variant)).effects == expected


async def test_a_raw_line_break_inside_a_field_is_kept_as_text() -> None:
    text = corpus_text("meditech_oru_r01_narrative_v23.hl7").replace(
        "Margins \\F\\ clear.", "Margins clear.\nAddendum: none."
    )
    result = await read(text, CONFIGS["meditech"])
    first = result.effects[1]
    assert isinstance(first, AddObservation)
    assert first.observation.value.endswith("Margins clear.\nAddendum: none.")


async def test_a_code_repeated_in_an_order_gets_distinct_ids() -> None:
    text = corpus_text("epic_oru_r01_cbc_v251.hl7").replace("777-3^Platelets^LN", "6690-2^WBC^LN")
    result = await read(text)
    ids = [e.observation.external_id for e in result.effects if isinstance(e, AddObservation)]
    assert ids == ["FIL7001/6690-2", "FIL7001/718-7", "FIL7001/6690-2#3"]


async def test_times_without_offset_use_the_configured_zone() -> None:
    text = corpus_text("meditech_adt_a01_v23.hl7")
    utc = (await read(text, {})).effects[1]
    denver = (await read(text, CONFIGS["meditech"])).effects[1]
    assert isinstance(utc, RecordEncounter) and isinstance(denver, RecordEncounter)
    assert utc.encounter.admitted_at.utcoffset() == timedelta(0)
    assert denver.encounter.admitted_at - utc.encounter.admitted_at == timedelta(hours=7)


async def test_an_unknown_time_zone_keeps_the_message_for_replay() -> None:
    result = await read(corpus_text("epic_adt_a01_admit_v251.hl7"), {"timezone": "Mars/Olympus_Mons"})
    assert result.error is not None and result.error.code == "207" and not result.error.reject
    assert "Mars/Olympus_Mons" in result.error.text and result.control_id == "EPC100001"


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"critical_flags": "HH"}, "critical_flags"),
        ({"assigning_authority_systems": {"GOODHOSP": "not a uri"}}, "assigning_authority_systems.GOODHOSP"),
        ({"receiving_application": "CARE|HUB"}, "receiving_application"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"sending_facilty": "GOODHOSP"}, "sending_facilty"),
    ],
)
def test_a_configuration_is_refused_at_its_path(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(ehr_hl7v2, config=config)
    assert [p.path for p in refused.value.problems] == [path]


async def test_other_content_types_are_not_this_plugins() -> None:
    text = corpus_text("epic_adt_a01_admit_v251.hl7")
    async with PluginHarness(ehr_hl7v2) as hub:
        for content_type in ("application/fhir+json", "text/plain"):
            message = inbound(text, content_type=content_type)
            assert await hub.call("carehub_inbound_message", message=message) is None
            assert await hub.call("carehub_inbound_reply", message=message, outcome="accepted", error=None) is None
        with_charset = inbound(text, content_type="Application/HL7-v2; charset=utf-8")
        assert await hub.call("carehub_inbound_message", message=with_charset) is not None
    assert ehr_hl7v2.MANIFEST.hooks == ("carehub_inbound_message", "carehub_inbound_reply")
    assert ehr_hl7v2.MANIFEST.data_categories == (
        "demographics",
        "clinical_results",
        "substance_use_disorder",
        "behavioral_health",
        "social_needs",
    )


@pytest.mark.parametrize(
    ("config", "diagnosis", "label"),
    [
        ({}, "F11.20^Opioid dependence, uncomplicated^I10", "substance_use_disorder"),
        ({}, "F32.9^Major depressive disorder, single episode^I10", "behavioral_health"),
        ({}, "Z59.0^Homelessness^I10", "social_needs"),
        ({}, "I50.9^Heart failure, unspecified^I10", None),
        ({"label_diagnoses": False}, "F11.20^Opioid dependence, uncomplicated^I10", None),
    ],
)
async def test_a_stay_is_labelled_by_its_diagnoses(config: dict[str, Any], diagnosis: str, label: str | None) -> None:
    """HL7 v2 marks no record sensitive: the stay takes the label of its most protective DG1 diagnosis (so the
    consent rules guard it like any labelled record), unless the tenant turned that off."""
    text = corpus_text("epic_adt_a01_admit_v251.hl7").replace(
        "DG1|2||E11.9^Type 2 diabetes mellitus without complications^I10", f"DG1|2||{diagnosis}"
    )
    async with PluginHarness(ehr_hl7v2, config=config) as hub:
        result = await hub.call("carehub_inbound_message", message=inbound(text))
    [stay] = [e.encounter for e in result.effects if hasattr(e, "encounter")]
    assert stay.data_category == label


async def test_the_ack_answers_the_sender() -> None:
    ack = await reply(corpus_text("cerner_adt_a01_inpatient_v231.hl7"), "accepted", config=CERNER)
    msh = ack.msh
    assert (msh.msh_3.to_er7(), msh.msh_4.to_er7()) == ("CAREHUB", "RIVERNET")  # the original's MSH-5/6
    assert (msh.msh_5.to_er7(), msh.msh_6.to_er7()) == ("SAINTFAKE_ADT", "SAINTFAKE")
    assert msh.msh_7.to_er7() == "20260105090000+0000"  # the harness's clock
    assert msh.msh_11.to_er7() == "P" and msh.msh_12.to_er7() == "2.3.1"
    control = msh.msh_10.to_er7()
    assert control.startswith("CH") and len(control) == 20 and control != "CER0000001"
    configured = await reply(
        corpus_text("cerner_adt_a01_inpatient_v231.hl7"),
        "accepted",
        config={"receiving_application": "HUB_ADT", "receiving_facility": "NETWORK"},
    )
    assert (configured.msh.msh_3.to_er7(), configured.msh.msh_4.to_er7()) == ("HUB_ADT", "NETWORK")
    assert configured.msh.msh_10.to_er7() == control  # the same receipt, the same ACK control id


async def test_what_the_host_decided_is_answered() -> None:
    text = corpus_text("epic_adt_a01_admit_v251.hl7")
    unstored = await reply(text, "rejected", "the message could not be stored; send it again")
    assert unstored.msa.msa_1.to_er7() == "AR" and unstored.msa.msa_2.to_er7() == "EPC100001"
    assert unstored.err.err_3.to_er7() == "207^Application internal error^HL70357"
    assert unstored.err.err_8.to_er7() == "the message could not be stored; send it again"
    refused = await reply(text, "error", "effect 2 (record_encounter): unknown patient")
    assert refused.msa.msa_1.to_er7() == "AE" and refused.err.err_3.to_er7().startswith("207^")


async def test_the_ack_escapes_the_user_message() -> None:
    text = corpus_text("broken_unsupported_trigger_a99_v251.hl7")
    result = await read(text)
    assert result.error is not None and "ADT^A99" in result.error.text
    ack = await reply(text, "error", result.error.text)
    assert ack.msa.msa_1.to_er7() == "AR"
    assert "ADT\\S\\A99" in ack.err.err_8.to_er7()


async def test_a_v23_error_ack_puts_the_text_in_msa_3() -> None:
    text = corpus_text("broken_truncated_v23.hl7")
    result = await read(text, CONFIGS["meditech"])
    assert result.error is not None
    ack = await reply(text, "error", result.error.text, config=CONFIGS["meditech"])
    assert ack.msh.msh_9.to_er7() == "ACK^A01" and ack.msh.msh_12.to_er7() == "2.3"
    assert ack.msa.msa_3.to_er7() == "PID-7 (date of birth) is required"
    assert ack.err.err_1.to_er7() == "PID^1^7^101&Required field missing&HL70357"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "MSH", "MSH|", "MSH|^~\\&", "MSH|^~\\&|A|B|C|D|20260105||ADT", "\x00\x01binary", "MSH|^~\\&" * 5000],
)
async def test_no_input_makes_a_hook_raise(text: str) -> None:
    async with PluginHarness(ehr_hl7v2) as hub:
        result = await hub.call("carehub_inbound_message", message=inbound(text))
        assert result.error is not None and result.effects == []
        answer = await hub.call("carehub_inbound_reply", message=inbound(text), outcome="error", error=None)
    ack = parse_ack(answer)
    assert ack.msa.msa_1.to_er7() in ("AE", "AR")


async def test_an_ack_is_sent_even_when_the_original_cannot_be_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    build = ehr_hl7v2.ack.build

    def fussy(header: Any, *args: Any, **kwargs: Any) -> str:
        if header is not None:
            raise ValueError("a value hl7apy would not take")
        return build(header, *args, **kwargs)

    monkeypatch.setattr(ehr_hl7v2.ack, "build", fussy)
    ack = await reply(corpus_text("epic_adt_a01_admit_v251.hl7"), "rejected", "send it again")
    assert ack.msa.msa_1.to_er7() == "AR" and ack.msh.msh_12.to_er7() == "2.5.1"
    assert ack.err.err_8.to_er7() == "send it again"
