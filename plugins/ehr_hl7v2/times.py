"""HL7 times (TS/DTM: ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``) as timezone-aware datetimes.

A time without an offset is read in the configured time zone (most feeds send local wall-clock time). A v2.3
TS may carry a degree of precision as a second component (``20260105^M``): the caller passes the first component
only. Carehub's payloads need at least a day for a time, a full date for a birth date.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from plugins.ehr_hl7v2.errors import invalid
from plugins.ehr_hl7v2.parse import Segment

_TS = re.compile(
    r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})(?:(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?)?)?"
    r"\s*(?:(?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2})|Z)?$"
)


def parse_datetime(raw: str, zone: tzinfo) -> datetime:
    """``raw`` as an aware datetime; ``ValueError`` when it is not an HL7 time of at least a day's precision."""
    match = _TS.match(raw.strip())
    if match is None:
        raise ValueError(f"{raw!r} is not an HL7 time (YYYYMMDD[HHMM[SS]][+/-ZZZZ])")
    part = match.groupdict()
    fraction = part["fraction"] or ""
    try:
        moment = datetime(
            int(part["year"]),
            int(part["month"]),
            int(part["day"]),
            int(part["hour"] or 0),
            int(part["minute"] or 0),
            int(part["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a valid time ({exc})") from exc
    if part["sign"]:
        offset = timedelta(hours=int(part["oh"]), minutes=int(part["om"]))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{raw!r} has an impossible offset")
        return moment.replace(tzinfo=timezone(-offset if part["sign"] == "-" else offset))
    if raw.strip().endswith("Z"):
        return moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=zone)


def parse_date(raw: str) -> date:
    """The date of an HL7 DT or TS (``19700101``, ``197001011230-0500``); ``ValueError`` when it has none."""
    text = raw.strip()
    if len(text) < 8 or not text[:8].isdigit():
        raise ValueError(f"{raw!r} is not an HL7 date (YYYYMMDD)")
    if len(text) > 8 and not _TS.match(text):
        raise ValueError(f"{raw!r} is not an HL7 date or time")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a valid date ({exc})") from exc


def field_time(segment: Segment, field: int, zone: tzinfo, what: str) -> datetime | None:
    """The time in ``field`` of ``segment`` (None when empty); :class:`MessageError` when it is not a time."""
    raw = segment.text(field)
    if not raw:
        return None
    try:
        return parse_datetime(raw, zone)
    except ValueError as exc:
        raise invalid(segment.location(field), what, str(exc)) from exc
