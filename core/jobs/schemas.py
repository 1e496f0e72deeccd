"""Output shapes of the dead-letter list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class DeadLetterOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    topic: str
    handler: str
    payload: dict[str, Any]
    error: str
    retries: int
    failed_at: datetime
    replay_requested_at: datetime | None
    replayed_at: datetime | None
