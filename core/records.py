"""Loading one tenant record by id for a request: absent (or another tenant's) is a 404, and audited."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import Base
from core.errors import NotFound
from core.principal import Principal

Record = TypeVar("Record", bound=Base)


async def get_or_404(
    session: AsyncSession,
    principal: Principal,
    model: type[Record],
    record_id: uuid.UUID,
    *,
    action: str,
    resource_type: str,
    detail: str,
    for_update: bool = False,
) -> Record:
    """The record of the caller's tenant with this id; otherwise an audited ``not_found`` and :class:`NotFound`.

    The session's tenant filter makes another tenant's record absent, so both answers are the same. With
    ``for_update`` the row is locked until the transaction ends (PostgreSQL), so that a read-then-write such as
    "the first acknowledgement stands" holds under concurrent requests.
    """
    record = await session.get(model, record_id, with_for_update=for_update or None, populate_existing=for_update)
    if record is None:
        audit.record_failure(
            session,
            principal.actor,
            action=action,
            resource_type=resource_type,
            resource_id=record_id,
            outcome="not_found",
        )
        raise NotFound(detail)
    return record
