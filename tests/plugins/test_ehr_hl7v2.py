"""The bundled ehr_hl7v2 plugin through the SDK's harness, over its corpus (``tests/plugins/hl7``): each message
read into the effects ``expected.json`` lists, with their values, or into its error (code, place, rejection), and
answered with an ACK that hl7apy parses back: MSH answering the original, MSA-1 AA/AE/AR, MSA-2 the original's
control id, and ERR in the message version's own form."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

import plugins.ehr_hl7v2 as ehr_hl7v2
from plugin_sdk import InboundResult
from plugin_sdk.payloads import InboundMessage
from plugin_sdk.testing import PluginHarness

CORPUS = Path(__file__).parent / "hl7"
EXPECTED: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text())
CONFIGS: dict[str, dict[str, Any]] = EXPECTED["configs"]
MESSAGES: dict[str, dict[str, Any]] = EXPECTED["messages"]


def inbound(text: str, *, receipt: str = "receipt-1", content_type: str = ehr_hl7v2.CONTENT_TYPE) -> InboundMessage:
    return InboundMessage(id=receipt, content_type=content_type, text=text, received_at=datetime.now(UTC))


def corpus_text(name: str) -> str:
    return (CORPUS / name).read_bytes().decode("utf-8")


def at(data: Any, path: str) -> Any:
    """The value at a dotted path (``1.encounter.admitted_at``; numbers index lists)."""
    for step in path.split("."):
        data = data[int(step)] if isinstance(data, list) else data[step]
    return data


def parse_ack(text: str) -> Any:
    assert "\n" not in text and text.startswith("MSH|^~\\&|")
    return parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)


def original_trigger(text: str) -> str:
    first = text.replace("\n", "\r").split("\r", 1)[0]
    fields = first.split("|") if first.startswith("MSH|") else []
    return fields[8].split("^")[1] if len(fields) > 8 and "^" in fields[8] else ""


def test_the_corpus_covers_what_feeds_send() -> None:
    """At least 30 messages, from several vendors' habits, in every version and line ending, each trigger."""
    files = sorted(p.name for p in CORPUS.glob("*.hl7"))
    assert files == sorted(MESSAGES) and len(files) >= 30
    versions = Counter(m["version"] for m in MESSAGES.values() if m["version"])
    assert set(versions) >= {"2.3", "2.3.1", "2.4", "2.5", "2.5.1"}
    assert Counter(m["line_endings"] for m in MESSAGES.values()).keys() == {"CR", "LF", "CRLF"}
    assert {"epic", "cerner", "meditech", "broken"} <= {m["vendor"] for m in MESSAGES.values()}
    triggers = {original_trigger(corpus_text(name)) for name, m in MESSAGES.items() if m["outcome"] == "accepted"}
    assert triggers >= {"A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40", "R01"}
    assert sum(m["outcome"] != "accepted" for m in MESSAGES.values()) >= 10


@pytest.mark.parametrize("name", sorted(MESSAGES))
async def test_corpus_message(name: str) -> None:
    spec = MESSAGES[name]
    text = corpus_text(name)
    endings = spec["line_endings"]
    if endings == "CR":
        assert "\n" not in text
    elif endings == "LF":
        assert "\r" not in text
    else:
        assert "\r\n" in text and text.count("\r") == text.count("\n")
    async with PluginHarness(ehr_hl7v2, config=CONFIGS[spec["config"]]) as hub:
        result: InboundResult = await hub.call("carehub_inbound_message", message=inbound(text, receipt=name))
        assert result.control_id == spec["control_id"]
        if spec["outcome"] == "accepted":
            assert result.error is None, result.error
            data = json.loads(msgspec.json.encode(result.effects))
            assert [e["kind"] for e in data] == spec["effects"]
            for path, want in spec["values"].items():
                assert at(data, path) == want, path
            assert result.summary == spec["summary"]
        else:
            assert result.effects == []
            assert result.error is not None
            got = {"code": result.error.code, "location": result.error.location, "reject": result.error.reject}
            assert got == spec["error"]
            assert result.summary and "TEST" not in result.summary  # no patient data in the message list
        reply = await hub.call(
            "carehub_inbound_reply",
            message=inbound(text, receipt=name),
            outcome="accepted" if result.error is None else "error",  # what the host says after storing it
            error=result.error.text if result.error else None,
        )
    ack = parse_ack(reply)
    version = spec.get("ack_version") or spec["version"]
    assert ack.msh.msh_12.to_er7() == version
    trigger = original_trigger(text)
    assert ack.msh.msh_9.to_er7() == (f"ACK^{trigger}^ACK" if version >= "2.3.1" else f"ACK^{trigger}")
    assert ack.msa.msa_1.to_er7() == spec["ack"]
    assert ack.msa.msa_2.to_er7() == (spec["control_id"] or "")
    errors = [s for s in ack.children if s.name == "ERR"]
    if spec["ack"] == "AA":
        assert errors == []
        return
    (err,) = errors
    code, location = spec["err"]["code"], spec["err"]["location"]
    if version >= "2.5":
        assert err.err_2.to_er7() == location
        assert err.err_3.to_er7() == f"{code}^{ehr_hl7v2.errors.CODE_TEXTS[code]}^HL70357"
        assert err.err_4.to_er7() == "E"
        assert err.err_8.to_er7()
    else:
        assert err.err_1.to_er7() == f"{location}^{code}&{ehr_hl7v2.errors.CODE_TEXTS[code]}&HL70357"
        assert ack.msa.msa_3.to_er7()
