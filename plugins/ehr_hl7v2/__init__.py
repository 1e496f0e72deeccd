"""Bundled inbound feed: HL7 v2 messages (ER7) from a hospital's interface engine, as received by carehub's MLLP
listener, read into patients, encounters, merges and results, and answered with an HL7 ACK.

- ADT^A01 admit, A02 transfer, A03 discharge, A04 registration, A08 patient update, A11 admit cancelled, A13
  discharge cancelled, A40 merge: :mod:`plugins.ehr_hl7v2.adt`; ORU^R01 results: :mod:`plugins.ehr_hl7v2.oru`;
  the patient of each PID: :mod:`plugins.ehr_hl7v2.patient`.
- What is refused and how it is answered: :mod:`plugins.ehr_hl7v2.interpret` and :mod:`plugins.ehr_hl7v2.ack`.
- Reading the text (versions 2.3 to 2.5.1 and what real feeds send): :mod:`plugins.ehr_hl7v2.parse`; times:
  :mod:`plugins.ehr_hl7v2.times`; the configuration: :data:`plugins.ehr_hl7v2.config.CONFIG_SCHEMA`.

Parsing only, no network: both hooks are synchronous and never raise; a message the plugin cannot read is an
``InboundResult`` with an error, which the host keeps for review and replay.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from plugin_sdk import InboundResult, Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import InboundMessage
from plugins.ehr_hl7v2 import ack
from plugins.ehr_hl7v2.config import CONFIG_SCHEMA, Settings
from plugins.ehr_hl7v2.interpret import Interpretation, interpret

__all__ = ["CONTENT_TYPE", "MANIFEST", "carehub_inbound_message", "carehub_inbound_reply"]

CONTENT_TYPE = "application/hl7-v2"

MANIFEST = Manifest(
    name="ehr_hl7v2",
    version="1.0.0",
    sdk=">=1.0,<2",
    title="HL7 v2 feed (MLLP)",
    description=(
        "Reads a hospital's HL7 v2 feed (ADT admissions, transfers, discharges and merges; ORU lab results, "
        "critical flags included) into patients, encounters and observations, and acknowledges each message."
    ),
    vendor="carehub",
    hooks=("carehub_inbound_message", "carehub_inbound_reply"),
    config_schema=CONFIG_SCHEMA,
    # The labels too: a stay is labelled by its diagnoses (plugin_sdk.labels), and the host takes a labelled
    # record only from a plugin that declares the label.
    data_categories=("demographics", "clinical_results", "substance_use_disorder", "behavioral_health", "social_needs"),
)


def _mine(message: InboundMessage) -> bool:
    return message.content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


# The latest readings, by receipt: the reply to a message comes right after its reading, and needs the header and
# the error again (reading a result message costs about as much as storing it).
_READINGS: OrderedDict[tuple[str, str, str], Interpretation] = OrderedDict()
_KEEP = 64


def _reading(context: PluginContext, message: InboundMessage) -> Interpretation:
    key = (message.id, message.text, json.dumps(context.config, sort_keys=True, default=str))
    found = _READINGS.get(key)
    if found is None:
        found = _READINGS[key] = interpret(message.text, context.config, context.log)
        while len(_READINGS) > _KEEP:
            _READINGS.popitem(last=False)
    return found


@hookimpl
def carehub_inbound_message(context: PluginContext, message: InboundMessage) -> InboundResult | None:
    """What an HL7 v2 message means; None for any other content type."""
    if not _mine(message):
        return None
    return _reading(context, message).result


@hookimpl
def carehub_inbound_reply(
    context: PluginContext, message: InboundMessage, outcome: str, error: str | None
) -> str | None:
    """The ACK for an HL7 v2 message; None for any other content type.

    The hook is told the outcome and the error's text, not its code or place: the message's reading (kept from
    :func:`carehub_inbound_message` for the same receipt, text and configuration, else read again) gives the ERR
    segment's code and location, and whether an error is a rejection (AR) rather than AE.
    """
    if not _mine(message):
        return None
    try:
        reading = _reading(context, message)
        return ack.build(
            reading.header,
            reading.result.error,
            outcome=outcome,
            error=error,
            settings=Settings.from_mapping(context.config),
            now=context.now(),
            receipt_id=message.id,
        )
    except Exception:  # a value hl7apy would not take: answer with the bare ACK rather than none
        context.log.exception("ehr_hl7v2 could not build the ACK in the message's own terms")
    try:
        return ack.build(
            None, None, outcome=outcome, error=error, settings=Settings(), now=context.now(), receipt_id=message.id
        )
    except Exception:
        context.log.exception("ehr_hl7v2 could not build an ACK")
        return None
