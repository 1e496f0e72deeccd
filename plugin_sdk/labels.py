"""Sensitivity labels from diagnosis codes, for connectors whose sender marks nothing (HL7 v2 has no security
labels): the label carehub's consent rules need before a record is shared with another facility.

The defaults are ICD-10-CM blocks, as privacy policies name them: F10-F19 (mental and behavioural disorders due
to psychoactive substance use) are substance use disorder records, which 42 CFR Part 2 protects; F20-F69 and
F80-F99 (psychiatric disorders, not dementia F01-F09 or intellectual disability F70-F79) are behavioural health;
Z55-Z65 (persons with potential health hazards related to socioeconomic and psychosocial circumstances) are
social needs. A record with several takes the most protective (:data:`PROTECTION`).

.. versionadded:: 1.0
"""

from __future__ import annotations

from collections.abc import Iterable

from plugin_sdk.payloads import Coding, SensitiveLabel

ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
# (first block, last block, label): a code belongs to a block by its first three characters.
ICD10_BLOCKS: tuple[tuple[str, str, SensitiveLabel], ...] = (
    ("F10", "F19", "substance_use_disorder"),
    ("F20", "F69", "behavioral_health"),
    ("F80", "F99", "behavioral_health"),
    ("Z55", "Z65", "social_needs"),
)
# The labels from the most protective down.
PROTECTION: tuple[SensitiveLabel, ...] = ("substance_use_disorder", "behavioral_health", "social_needs")


def label_of(coding: Coding) -> SensitiveLabel | None:
    """The sensitivity label of one code, None for a code of no sensitive block (or of another system)."""
    if coding.system not in ICD10_SYSTEMS:
        return None
    block = coding.code.strip().upper().replace(".", "")[:3]
    for first, last, label in ICD10_BLOCKS:
        if first <= block <= last:
            return label
    return None


def strongest(codings: Iterable[Coding]) -> SensitiveLabel | None:
    """The most protective label among ``codings`` (a stay with an opioid dependence and a depression is a
    substance use disorder record), None when none is sensitive."""
    return most_protective(*(label_of(coding) for coding in codings))


def most_protective(*labels: str | None) -> SensitiveLabel | None:
    """The most protective of ``labels`` (None among them, or none sensitive: None)."""
    return next((label for label in PROTECTION if label in labels), None)
