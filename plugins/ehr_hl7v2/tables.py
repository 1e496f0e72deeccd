"""HL7 v2 table values and what they become in carehub's payloads: coding systems (table 0396), abnormal flags
(0078), result status (0085), discharge disposition (0112), administrative sex (0001) and languages."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from plugin_sdk.payloads import Interpretation

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
SNOMED = "http://snomed.info/sct"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
# A coding system this table does not know keeps its HL7 name under this prefix; a code without one is "local".
UNKNOWN_SYSTEM_PREFIX = "urn:carehub:hl7v2:code-system:"

CODING_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "I10": ICD10CM,
    "I10C": ICD10CM,
    "ICD10": ICD10CM,
    "ICD10CM": ICD10CM,
    "ICD-10-CM": ICD10CM,
    "I9": ICD9CM,
    "I9C": ICD9CM,
    "ICD9": ICD9CM,
    "ICD9CM": ICD9CM,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "UCUM": "http://unitsofmeasure.org",
}


def coding_system(name: str) -> str:
    """The URI of an HL7 coding system name (``LN``, ``I10``); unknown and local ones stay apart by name."""
    key = name.strip().upper()
    return CODING_SYSTEMS.get(key) or UNKNOWN_SYSTEM_PREFIX + (quote(name.strip(), safe="") or "local")


# OBX-8 (table 0078): the flag, and whether it points up, down or neither (for a configured critical flag).
FLAGS: dict[str, Interpretation] = {
    "N": "normal",
    "A": "abnormal",
    "H": "high",
    "L": "low",
    "HH": "critical_high",
    "LL": "critical_low",
    "AA": "critical",
    ">": "high",  # above the instrument's scale: critical only when configured so
    "<": "low",
    "HU": "high",
    "LU": "low",
    "S": "normal",  # susceptible
    "R": "abnormal",  # resistant
    "I": "abnormal",  # intermediate
    "MS": "abnormal",
    "VS": "abnormal",
    "POS": "abnormal",
    "NEG": "normal",
    "W": "abnormal",
    "B": "normal",
}
_UP = {"H", "HH", ">", "HU"}
_DOWN = {"L", "LL", "<", "LU"}
_SEVERITY = ("normal", "low", "high", "abnormal", "critical_low", "critical_high", "critical")
_DOWNGRADED: dict[Interpretation, Interpretation] = {
    "critical_high": "high",
    "critical_low": "low",
    "critical": "abnormal",
}


def interpretation(flags: list[str], critical: frozenset[str]) -> Interpretation:
    """The most severe reading of OBX-8's flags. A flag in ``critical`` is critical (high, low or neither); a
    critical flag of the table that is not configured as critical reads as high, low or abnormal. An unknown
    flag is abnormal: a sender flags a result for a reason."""
    found: list[Interpretation] = []
    for raw in flags:
        flag = raw.strip().upper()
        if not flag:
            continue
        if flag in critical:
            found.append("critical_high" if flag in _UP else "critical_low" if flag in _DOWN else "critical")
            continue
        reading = FLAGS.get(flag, "abnormal")
        found.append(_DOWNGRADED.get(reading, reading))
    return max(found, key=_SEVERITY.index, default="normal")


ResultStatus = Literal["preliminary", "final", "corrected", "cancelled"]
# OBX-11 / OBR-25 (table 0085). None: no result yet (skipped).
RESULT_STATUS: dict[str, ResultStatus | None] = {
    "F": "final",
    "U": "final",  # changed to final without retransmitting the value
    "P": "preliminary",
    "R": "preliminary",  # entered, not verified
    "S": "preliminary",  # partial
    "A": "preliminary",  # some, not all, results available (OBR-25)
    "C": "corrected",
    "M": "corrected",  # OBR-25: corrected, not final
    "X": "cancelled",
    "D": "cancelled",  # deleted
    "W": "cancelled",  # posted to the wrong patient
    "I": None,  # specimen in the lab, no result
    "O": None,  # order received, no result
    "N": None,  # not asked
}

Disposition = Literal["home", "home_health", "skilled_nursing", "rehabilitation", "hospice", "other"]
# PV1-36 (table 0112, the UB-04 patient status codes most feeds use).
DISPOSITIONS: dict[str, Disposition] = {
    "01": "home",
    "06": "home_health",
    "03": "skilled_nursing",
    "62": "rehabilitation",
    "50": "hospice",
    "51": "hospice",
}


def disposition(raw: str) -> Disposition | None:
    """PV1-36 as carehub's disposition: the known codes (``1`` read as ``01``), any other code ``other``, none
    None."""
    code = raw.strip().upper()
    if not code:
        return None
    if code.isdigit() and len(code) == 1:
        code = "0" + code
    return DISPOSITIONS.get(code, "other")


Sex = Literal["female", "male", "other", "unknown"]
SEXES: dict[str, Sex] = {"F": "female", "M": "male", "O": "other", "A": "other", "X": "other", "U": "unknown"}

# PID-15: ISO 639-2 codes (what most feeds send) as the two-letter BCP 47 tag carehub shows.
LANGUAGES = {
    "ENG": "en",
    "SPA": "es",
    "FRE": "fr",
    "FRA": "fr",
    "GER": "de",
    "DEU": "de",
    "POR": "pt",
    "ITA": "it",
    "CHI": "zh",
    "ZHO": "zh",
    "VIE": "vi",
    "KOR": "ko",
    "RUS": "ru",
    "ARA": "ar",
    "TGL": "tl",
    "HAT": "ht",
    "POL": "pl",
    "JPN": "ja",
    "HIN": "hi",
    "SOM": "so",
}

# LOINC codes of vital signs (OBX-3): such a result is a vital sign, not a laboratory result.
VITAL_SIGNS = frozenset(
    {"8867-4", "8480-6", "8462-4", "85354-9", "8310-5", "9279-1", "2708-6", "59408-5", "29463-7", "8302-2", "39156-5"}
)
