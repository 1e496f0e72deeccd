"""Small helpers shared by the services' input handling."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from core.errors import InvalidInput

# A date-time that must carry its UTC offset ("2026-12-01T09:00:00Z" or "...+02:00").
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200


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
