"""Small helpers shared by the services' input handling."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from email_validator import EmailNotValidError, validate_email

from core.errors import InvalidInput

# A date-time that must carry its UTC offset ("2026-12-01T09:00:00Z" or "...+02:00").
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200

# Text that people read on a screen refuses the characters that hide or disguise what it says: C0 and C1
# controls, DEL, line and paragraph separators, and the bidirectional embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069, "Trojan Source"). A single line refuses every line break; multi-line text
# (messages, notes, descriptions) keeps tab, line feed and carriage return. As a schema pattern, the same
# rule reaches the OpenAPI document, so clients learn it before they send.
_HIDDEN = "\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
SAFE_LINE = f"^[^\\x00-\\x1f{_HIDDEN}]*(?![\\s\\S])"  # not "$", which also matches before a final line feed
SAFE_TEXT = f"^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f{_HIDDEN}]*$"

# A first, cheap shape check that the schema (and so the OpenAPI document) states; the address itself is
# checked and normalised by email-validator (see :func:`email_address`).
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+\.[^@\s<>\x00-\x1f\x7f]+$",
        description="an email address (normalised: the domain in lower case)",
    ),
]


def given(data: msgspec.Struct) -> dict[str, Any]:
    """The fields a partial update names (those left out are ``UNSET``)."""
    return {f: getattr(data, f) for f in data.__struct_fields__ if getattr(data, f) is not msgspec.UNSET}


def to_utc(value: datetime, field: str, source: str = "body") -> datetime:
    """The same instant in UTC; a time without an offset, or outside the years carehub plans for, is refused."""
    if value.tzinfo is None:
        raise InvalidInput("give a time zone (e.g. 2026-12-01T09:00:00Z)", field=field, source=source)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_YEAR <= utc.year <= LATEST_YEAR:
        raise InvalidInput(f"a time between {EARLIEST_YEAR} and {LATEST_YEAR}, please", field=field, source=source)
    return utc


def email_address(value: Any, field: str = "email") -> Any:
    """An email address checked and normalised by email-validator (a maintained implementation of the RFC
    5322 / 6531 syntax with Unicode safety rules); ``None`` and ``UNSET`` pass through.

    Refused: control characters, bidirectional overrides and other unsafe Unicode, markup, quoted or
    commented forms, and special-use domains. The domain is normalised to lower case (IDNA); the local part
    keeps its case, as mail systems may distinguish it.
    """
    if not isinstance(value, str):
        return value
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"{field} is not a valid email address: {exc}", field=field) from None


def normalise_emails(data: msgspec.Struct, *fields: str) -> None:
    """Check and normalise the email fields of a request body as it is decoded (from ``__post_init__``)."""
    for field in fields:
        setattr(data, field, email_address(getattr(data, field), field))
