"""Notification channels: how a message leaves carehub for a person (email, SMS, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

# How much a message may say. "none": only that there is something to look at in carehub; "logistics": also
# when and where (an appointment's date, time, place, the facility's name); "clinical": anything (diagnoses,
# results, care plan content). carehub renders every message at the lowest of the channel's level and the
# recipient's; clinical detail never leaves the in-app inbox and the portal.
Detail = Literal["none", "logistics", "clinical"]
DETAIL_LEVELS: tuple[Detail, ...] = ("none", "logistics", "clinical")


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one address, already rendered at the channel's detail level."""

    id: str  # carehub's notification id: stable across retries, use it as the provider's idempotency key
    channel: str
    to: str  # an email address, or a phone number in E.164 form (+15551234567)
    subject: str  # for channels without subjects, ignore it (text stands alone)
    text: str
    sender_name: str  # the facility sending it, e.g. "Riverside Clinic"


class ChannelError(Exception):
    """Delivery failed. ``permanent``: retrying cannot help (bad address, rejected content); otherwise carehub
    retries with backoff and, after the last retry, keeps the job in the tenant's dead-letter list (a replay
    sends the notification again)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(ABC):
    """A way to reach people. Subclass it, set the class attributes, implement :meth:`send`."""

    name: ClassVar[str]  # unique, lower case: "email", "sms"
    address_kind: ClassVar[Literal["email", "phone"]]
    max_detail: ClassVar[Detail] = "logistics"
    # Every network call the channel makes must end within this many seconds (carehub's job time limit
    # cannot interrupt a blocked socket).
    timeout_seconds: float = 10.0

    @abstractmethod
    async def send(self, message: OutboundMessage) -> str | None:
        """Deliver ``message``; return the provider's reference for it, if any. Raise :class:`ChannelError`."""
