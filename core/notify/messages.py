"""What a notification says, at each level of detail a channel may carry (see plugin_sdk.notify.Detail).

Clinical detail (a diagnosis, a result, why an appointment was booked) is written only at the "clinical" level,
which only the in-app inbox and the patient portal carry. Email and SMS get "logistics" at most: who is writing
and when and where to be; a staff member's alert outside carehub says only that something is waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from plugin_sdk import DETAIL_LEVELS, Detail


@dataclass(frozen=True)
class Text:
    subject: str
    text: str


@dataclass(frozen=True)
class Content:
    """A message at each level; a level missing takes the next lower one."""

    none: Text
    logistics: Text | None = None
    clinical: Text | None = None

    def at(self, level: Detail) -> Text:
        for candidate in reversed(DETAIL_LEVELS[: DETAIL_LEVELS.index(level) + 1]):
            text: Text | None = getattr(self, candidate)
            if text is not None:
                return text
        return self.none


def lower(a: Detail, b: Detail) -> Detail:
    return a if DETAIL_LEVELS.index(a) <= DETAIL_LEVELS.index(b) else b


def local_time(at: datetime, timezone: str) -> str:
    """E.g. "Tue 26 Nov 2026 at 09:30 (Europe/Paris)"."""
    local = at.astimezone(ZoneInfo(timezone))
    return f"{local:%a %d %b %Y} at {local:%H:%M} ({timezone})"


KIND_WORDS = {"in_person": "in person", "phone": "by phone", "video": "by video"}


def appointment_reminder(
    *, facility: str, start_at: datetime, kind: str, location: str | None, reason: str | None, timezone: str
) -> Content:
    when = local_time(start_at, timezone)
    how = KIND_WORDS.get(kind, kind)
    where = f" at {location}" if kind == "in_person" and location else ""
    video = " The link is in your patient portal." if kind == "video" else ""
    logistics = Text(
        subject=f"Appointment reminder from {facility}",
        text=f"Reminder: you have an appointment with {facility} {how}{where} on {when}.{video} "
        "To change it, call the clinic or use your patient portal.",
    )
    clinical = Text(
        subject=logistics.subject,
        text=logistics.text + (f" Reason: {reason}." if reason else ""),
    )
    return Content(
        none=Text(
            subject=f"A message from {facility}",
            text=f"{facility} has a message for you. Please sign in to your patient portal to read it.",
        ),
        logistics=logistics,
        clinical=clinical,
    )


ALERT_WORDS = {
    "lab.critical": "a critical lab result",
    "lab.critical.unacknowledged": "an unacknowledged critical lab result",
    "task.overdue": "an overdue task",
    "care_plan.updated": "a care plan update",
}


def staff_alert(*, facility: str, kind: str, severity: str, title: str, body: str | None) -> Content:
    what = ALERT_WORDS.get(kind, "an alert")
    label = "Critical alert" if severity == "critical" else "Alert"
    return Content(
        none=Text(
            subject=f"carehub: {label.lower()} at {facility}",
            text=f"You have {'a critical alert' if severity == 'critical' else 'an alert'} in carehub at {facility}. "
            "Sign in to see it.",
        ),
        logistics=Text(
            subject=f"carehub: {label.lower()} at {facility}",
            text=f"{label} in carehub at {facility}: {what}. Sign in to see it.",
        ),
        clinical=Text(subject=title, text=body or title),
    )
