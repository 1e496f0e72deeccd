"""The acknowledgement (original mode ACK) of a message, built with hl7apy: every value is set as its HL7 data
type and escaped for ER7 by the library, in the message's own version.

- MSH: sending application and facility are the configured ``receiving_application``/``receiving_facility``,
  else the original's MSH-5/MSH-6; receiving are the original's MSH-3/MSH-4. MSH-7 is the context's clock, MSH-9
  ``ACK^<trigger>^ACK`` (``ACK^<trigger>`` before v2.3.1, whose message type has two components), MSH-10 a new
  control id derived from carehub's receipt id (a receipt always gets the same one), MSH-11 the original's
  processing id, MSH-12 the original's version (2.5.1 when the original has none hl7apy knows).
- MSA-1 ``AA`` (accepted), ``AE`` (error) or ``AR`` (rejected, or an error that the message can never be
  accepted), MSA-2 the original's control id.
- ERR on AE and AR. From v2.5: ERR-2 the location (segment, sequence, field, component), ERR-3 the table 0357
  code, ERR-4 severity ``E``, ERR-8 the message for a person. The ERR of v2.3 to v2.4 has ERR-1 only: the
  location and code there, and the message in MSA-3.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from hl7apy import SUPPORTED_LIBRARIES, load_library
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage

from plugin_sdk.payloads import InboundError
from plugins.ehr_hl7v2.config import DEFAULT_APPLICATION, Settings
from plugins.ehr_hl7v2.errors import CODE_TEXTS, INTERNAL_ERROR
from plugins.ehr_hl7v2.parse import Header

DEFAULT_VERSION = "2.5.1"
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\.(\d+))?)?$")
_TRIGGER = re.compile(r"^[A-Z0-9]{1,3}$")


def ack_code(outcome: str, problem: InboundError | None) -> str:
    if outcome == "accepted":
        return "AA"
    if outcome == "rejected" or (problem is not None and problem.reject):
        return "AR"
    return "AE"


def control_id(receipt_id: str) -> str:
    """A control id of 20 characters (MSH-10's length up to v2.5) for the ACK of carehub's receipt."""
    return "CH" + hashlib.sha256(receipt_id.encode()).hexdigest()[:18].upper()


def _version(header: Header | None) -> str:
    version = header.version if header is not None else ""
    return version if version in SUPPORTED_LIBRARIES else DEFAULT_VERSION


def _put(parent: Any, name: str, text: str, version: str) -> None:
    """Set the leaf ``name`` of ``parent`` to ``text`` as the leaf's own base data type (nothing when empty)."""
    if not text:
        return
    reference = parent.find_child_reference(name)["ref"]
    base = load_library(version).get_base_datatypes()
    datatype = reference[2] if reference[2] in base else "ST"
    setattr(parent, name, base[datatype](int(text) if datatype in ("NM", "SI") else text))


def _put_parts(segment: Any, name: str, parts: list[str], version: str) -> None:
    """Set field ``name``: its components in turn when it is composite, else its single value."""
    reference = segment.find_child_reference(name)["ref"]
    if reference[0] == "leaf":
        _put(segment, name, parts[0] if parts else "", version)
        return
    field = getattr(segment, name)
    prefix = str(reference[2]).lower()
    for index, part in enumerate(parts, start=1):
        _put(field, f"{prefix}_{index}", part, version)


def _location(text: str | None) -> list[str]:
    """``PID-7`` as ``[PID, 1, 7]``, ``OBX[2]-14`` as ``[OBX, 2, 14]``, ``MSH-9.2`` as ``[MSH, 1, 9, 1, 2]``."""
    match = _LOCATION.match(text or "")
    if match is None:
        return []
    segment, sequence, field, component = match.groups()
    parts = [segment, sequence or "1", field or ""]
    return [*parts, "1", component] if component else parts


def build(
    header: Header | None,
    problem: InboundError | None,
    *,
    outcome: str,
    error: str | None,
    settings: Settings,
    now: datetime,
    receipt_id: str,
) -> str:
    """The ACK's ER7 text, segments separated by CR (see the module's docstring).

    An AA, nearly every answer a feed gets, is formatted here: hl7apy took 3-4 ms to build one, more than the
    rest of a message's reading. It is the same text hl7apy makes (a test compares them over the corpus); an
    error's ACK, and any value with a control character, is left to hl7apy.
    """
    if ack_code(outcome, problem) == "AA":
        fast = _accepted(header, settings, now, receipt_id)
        if fast is not None:
            return fast
    return build_with_hl7apy(
        header, problem, outcome=outcome, error=error, settings=settings, now=now, receipt_id=receipt_id
    )


_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"})


def _field(*components: str) -> str | None:
    """Components as one ER7 field, escaped, trailing empty ones dropped; None for a control character."""
    if any(ord(c) < 32 for part in components for c in part):
        return None
    return "^".join(part.translate(_ESCAPES) for part in components).rstrip("^")


def _accepted(header: Header | None, settings: Settings, now: datetime, receipt_id: str) -> str | None:
    version = _version(header)
    original = header or Header("", ("", "", ""), "", "", "", "", "", "", "")
    trigger = original.trigger if _TRIGGER.match(original.trigger) else ""
    kind = ("ACK", trigger, "ACK") if version >= "2.3.1" else ("ACK", trigger)
    fields = [
        _field(settings.receiving_application or original.receiving_application or DEFAULT_APPLICATION),
        _field(settings.receiving_facility or original.receiving_facility),
        _field(original.sending_application),
        _field(*original.sending_facility),
        now.strftime("%Y%m%d%H%M%S%z"),
        "",
        "^".join(kind).rstrip("^"),
        control_id(receipt_id),
        _field(original.processing_id[:1] or "P"),
        version,
    ]
    control = _field(original.control_id)
    if control is None or any(f is None for f in fields):
        return None
    msa = f"MSA|AA|{control}" if control else "MSA|AA"
    return "MSH|^~\\&|" + "|".join(f or "" for f in fields) + "\r" + msa


def build_with_hl7apy(
    header: Header | None,
    problem: InboundError | None,
    *,
    outcome: str,
    error: str | None,
    settings: Settings,
    now: datetime,
    receipt_id: str,
) -> str:
    """The ACK built with hl7apy (every outcome)."""
    version = _version(header)
    ack = Hl7apyMessage("ACK", version=version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = ack.msh
    original = header or Header("", ("", "", ""), "", "", "", "", "", "", "")
    application = settings.receiving_application or original.receiving_application or DEFAULT_APPLICATION
    _put_parts(msh, "msh_3", [application], version)
    _put_parts(msh, "msh_4", [settings.receiving_facility or original.receiving_facility], version)
    _put_parts(msh, "msh_5", [original.sending_application], version)
    _put_parts(msh, "msh_6", list(original.sending_facility), version)
    msh.msh_7 = now.strftime("%Y%m%d%H%M%S%z")
    trigger = original.trigger if _TRIGGER.match(original.trigger) else ""
    _put_parts(msh, "msh_9", ["ACK", trigger, "ACK"] if version >= "2.3.1" else ["ACK", trigger], version)
    _put_parts(msh, "msh_10", [control_id(receipt_id)], version)
    _put_parts(msh, "msh_11", [original.processing_id[:1] or "P"], version)
    code = ack_code(outcome, problem)
    msa = ack.msa
    _put(msa, "msa_1", code, version)
    _put(msa, "msa_2", original.control_id, version)
    if code != "AA":
        _error(ack, problem, error, version)
    return str(ack.to_er7())


def _error(ack: Any, problem: InboundError | None, error: str | None, version: str) -> None:
    code = (problem.code if problem is not None else None) or INTERNAL_ERROR
    text = error or (problem.text if problem is not None else "") or CODE_TEXTS.get(code, "error")
    where = _location(problem.location if problem is not None else None)
    err = ack.add_segment("ERR")
    if version >= "2.5":
        _put_parts(err, "err_2", where, version)
        _put_parts(err, "err_3", [code, CODE_TEXTS.get(code, ""), "HL70357"], version)
        _put(err, "err_4", "E", version)
        _put(err, "err_8", text, version)
        return
    _put(ack.msa, "msa_3", text[:80], version)  # MSA-3 is 80 characters long up to v2.4
    eld = err.err_1
    prefix = str(eld.datatype).lower()
    for index, part in enumerate(where[:3], start=1):
        _put(eld, f"{prefix}_{index}", part, version)
    ce = getattr(eld, f"{prefix}_4")
    for index, part in enumerate([code, CODE_TEXTS.get(code, ""), "HL70357"], start=1):
        _put(ce, f"ce_{index}", part, version)
