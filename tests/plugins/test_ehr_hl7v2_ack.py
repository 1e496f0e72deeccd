"""The AA acknowledgement ehr_hl7v2 formats itself is the one hl7apy builds, character for character: over every
message of the corpus (each read with the configuration the corpus names for it, and without one), and over
headers whose values need ER7 escapes or carry a control character (which hl7apy then builds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from plugins.ehr_hl7v2 import ack
from plugins.ehr_hl7v2.config import Settings
from plugins.ehr_hl7v2.interpret import interpret
from plugins.ehr_hl7v2.parse import Header
from tests.plugins.test_ehr_hl7v2 import CONFIGS, MESSAGES, corpus_text

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=-5)))


def both(header: Header | None, settings: Settings) -> tuple[str, str]:
    common = {"outcome": "accepted", "error": None, "settings": settings, "now": NOW, "receipt_id": "receipt-7"}
    return ack.build(header, None, **common), ack.build_with_hl7apy(header, None, **common)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_an_accepted_message_gets_hl7apys_ack(name: str) -> None:
    for config in ({}, CONFIGS[MESSAGES[name]["config"]]):
        reading = interpret(corpus_text(name), config)
        fast, reference = both(reading.header, Settings.from_mapping(config))
        assert fast == reference


@pytest.mark.parametrize(
    "header",
    [
        Header("EP|IC", ("GOOD^HOSP", "1.2&3", "ISO"), "HUB~A", "NET\\B", "ADT", "A01", "C|1", "T", "2.5.1"),
        Header("", ("", "", ""), "", "", "ADT", "", "", "", ""),
        Header("EPIC", ("", "2.16.840", "ISO"), "", "", "ORU", "R01", "X", "D", "2.3"),
        Header("EPIC", ("GOODHOSP", "", ""), "", "", "ADT", "a-01", "X", "P", "2.2"),
        Header("EPIC", ("GOODHOSP", "", ""), "", "", "ADT", "A01", "X", "P", "9.9"),
        None,
    ],
)
def test_escapes_and_odd_headers_match_hl7apy(header: Header | None) -> None:
    fast, reference = both(header, Settings())
    assert fast == reference


def test_a_control_character_is_left_to_hl7apy() -> None:
    header = Header("EPIC\x07", ("GOODHOSP", "", ""), "", "", "ADT", "A01", "X", "P", "2.5.1")
    assert ack._accepted(header, Settings(), datetime.now(UTC), "r") is None
    fast, reference = both(header, Settings())
    assert fast == reference
