"""Why a message cannot be applied, in HL7's terms: the error codes of HL7 table 0357 and the exception the
mapping raises (caught once, by :mod:`plugins.ehr_hl7v2.interpret`, and returned as an ``InboundError``)."""

from __future__ import annotations

from plugin_sdk.payloads import InboundError

SEGMENT_SEQUENCE = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_VERSION = "203"
INTERNAL_ERROR = "207"

# ERR-3.2 / ERR-1.4.2: each code's text in table 0357.
CODE_TEXTS = {
    "0": "Message accepted",
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    "202": "Unsupported processing id",
    UNSUPPORTED_VERSION: "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    INTERNAL_ERROR: "Application internal error",
}


class MessageError(Exception):
    """The message cannot be applied. ``reject``: it can never be (AR), otherwise it is in error (AE);
    ``location`` is where (``PID-7``, ``OBX[2]-5``), ``code`` the table 0357 code."""

    def __init__(self, text: str, *, code: str, location: str | None = None, reject: bool = False) -> None:
        super().__init__(text)
        self.text, self.code, self.location, self.reject = text, code, location, reject

    def as_error(self) -> InboundError:
        return InboundError(text=self.text, location=self.location, code=self.code, reject=self.reject)


def missing(location: str, what: str) -> MessageError:
    return MessageError(f"{location} ({what}) is required", code=REQUIRED_FIELD_MISSING, location=location)


def invalid(location: str, what: str, reason: str) -> MessageError:
    return MessageError(f"{location} ({what}): {reason}", code=DATA_TYPE_ERROR, location=location)
