"""From ER7 text to an :class:`~plugin_sdk.effects.InboundResult`, never raising.

The checks, in order, and what a failing one answers (HL7 table 0357 codes):

1. The text is an HL7 message (starts with MSH, declares its delimiters): else rejected (AR), 100 or 102.
2. MSH-12 is a v2 version: else rejected, 203.
3. ``sending_facility``, when configured, is MSH-4 (its namespace or universal id): else rejected, 103.
4. MSH-9 is a supported message type (ADT, ORU) and trigger event: else rejected, 200 or 201.
5. MSH-10, the control id, is present: else in error (AE), 101.
6. The mapping (:mod:`plugins.ehr_hl7v2.adt`, :mod:`plugins.ehr_hl7v2.oru`): a missing segment (100), a
   missing required field (101), a value of the wrong type such as an impossible date (102) or outside its table
   (103) is an error (AE) at its place (``PID-7``, ``OBX[2]-14``).

Anything else going wrong (a configuration that cannot be used, a fault of the plugin) is an error with 207, so
that the message is kept and can be replayed once it is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_sdk.effects import AddObservation, AnyEffect, InboundResult
from plugin_sdk.payloads import InboundError
from plugins.ehr_hl7v2 import adt, oru
from plugins.ehr_hl7v2.config import ConfigError, Settings
from plugins.ehr_hl7v2.errors import (
    CODE_TEXTS,
    INTERNAL_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_VERSION,
    MessageError,
    missing,
)
from plugins.ehr_hl7v2.parse import Header, Message, salvage_header

log = logging.getLogger("carehub.plugin.ehr_hl7v2")
SUPPORTED: dict[str, dict[str, str]] = {"ADT": adt.TRIGGERS, "ORU": {"R01": "results"}}
# The segments the mapping reads; the others are not parsed.
READS = frozenset({"EVN", "PID", "PV1", "DG1", "MRG", "ORC", "OBR", "OBX"})


@dataclass(frozen=True)
class Interpretation:
    """The result, and the header it was read from (None when the text has none): the ACK needs both."""

    result: InboundResult
    header: Header | None


def interpret(text: str, config: Mapping[str, Any], logger: logging.Logger = log) -> Interpretation:
    header: Header | None = None
    try:
        settings = Settings.from_mapping(config)
        message = Message(text, READS)
        header = message.header
        return Interpretation(_read(message, settings), header)
    except MessageError as exc:
        problem = exc.as_error()
        header = header or salvage_header(text)
    except ConfigError as exc:
        problem = InboundError(text=str(exc), code=INTERNAL_ERROR)
    except Exception as exc:  # a fault of the plugin: contained, the message is kept for replay
        logger.exception("ehr_hl7v2 could not read a message")
        problem = InboundError(
            text=f"the plugin could not read the message ({type(exc).__name__})", code=INTERNAL_ERROR
        )
    control_id = (header.control_id or None) if header is not None else None
    return Interpretation(
        InboundResult(control_id=control_id, error=problem, summary=_summary(header, problem)), header
    )


def _check(header: Header, settings: Settings) -> str:
    """The checks 2-5 of the module's docstring; the word for the message's trigger."""
    if header.version and not header.version.startswith("2."):
        raise MessageError(
            f"MSH-12: version {header.version!r} is not HL7 v2",
            code=UNSUPPORTED_VERSION,
            location="MSH-12",
            reject=True,
        )
    expected = settings.sending_facility
    if expected and expected.upper() not in {part.upper() for part in header.sending_facility[:2] if part}:
        raise MessageError(
            f"MSH-4: this feed accepts messages from {expected} only, not {header.sending_facility[0] or '(none)'}",
            code=TABLE_VALUE_NOT_FOUND,
            location="MSH-4",
            reject=True,
        )
    triggers = SUPPORTED.get(header.message_type)
    if triggers is None:
        raise MessageError(
            f"MSH-9: message type {header.message_type or '(none)'} is not supported (ADT and ORU are)",
            code=UNSUPPORTED_MESSAGE_TYPE,
            location="MSH-9",
            reject=True,
        )
    if header.trigger not in triggers:
        raise MessageError(
            f"MSH-9: {header.message_type}^{header.trigger or '(none)'} is not supported "
            f"({', '.join(sorted(triggers))} are)",
            code=UNSUPPORTED_EVENT_CODE,
            location="MSH-9.2",
            reject=True,
        )
    if not header.control_id:
        raise missing("MSH-10", "message control id")
    return triggers[header.trigger]


def _read(message: Message, settings: Settings) -> InboundResult:
    header = message.header
    verb = _check(header, settings)
    effects: list[AnyEffect]
    if header.message_type == "ADT":
        effects, subjects = adt.effects(message, header.trigger, settings)
    else:
        effects, subjects = oru.effects(message, settings)
    summary = f"{header.message_type}^{header.trigger} {verb} of {', '.join(subjects)}"
    if header.message_type == "ORU":
        count = sum(1 for e in effects if isinstance(e, AddObservation))
        summary += f" ({count} observation{'' if count == 1 else 's'})"
    return InboundResult(control_id=header.control_id, effects=effects, summary=summary)


def _summary(header: Header | None, problem: InboundError) -> str:
    """What the admin's message list shows for a message in error: its type and where, never patient data."""
    if header is None:
        return "not an HL7 v2 message"
    kind = f"{header.message_type or '?'}^{header.trigger or '?'}"
    what = CODE_TEXTS.get(problem.code or "", "error")
    return f"{kind} {'rejected' if problem.reject else 'in error'}: {what}" + (
        f" at {problem.location}" if problem.location else ""
    )
