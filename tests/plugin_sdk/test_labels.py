"""The SDK's default labels from ICD-10-CM codes, which connectors use when their sender marks nothing."""

from __future__ import annotations

import pytest

from plugin_sdk.labels import label_of, strongest
from plugin_sdk.payloads import Coding

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("F10.20", "substance_use_disorder"),
        ("F1120", "substance_use_disorder"),
        ("f19.9", "substance_use_disorder"),
        ("F20.9", "behavioral_health"),
        ("F32.9", "behavioral_health"),
        ("F84.0", "behavioral_health"),
        ("F03.90", None),  # dementia
        ("F70", None),  # intellectual disability
        ("Z59.0", "social_needs"),
        ("Z65.8", "social_needs"),
        ("Z66", None),
        ("I50.9", None),
    ],
)
def test_a_code_takes_its_blocks_label(code: str, label: str | None) -> None:
    assert label_of(Coding(system=ICD10CM, code=code)) == label


def test_another_system_is_not_labelled_by_its_code() -> None:
    assert label_of(Coding(system="http://snomed.info/sct", code="F10.20")) is None


def test_the_most_protective_label_wins() -> None:
    codings = [Coding(system=ICD10CM, code=c) for c in ("Z59.0", "F32.9", "F11.20", "I10")]
    assert strongest(codings) == "substance_use_disorder"
    assert strongest(codings[:2]) == "behavioral_health"
    assert strongest([]) is None
