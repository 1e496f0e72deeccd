"""What the host records when a contained plugin call fails where no admin is waiting for the answer (a job, a
coordinator's search): the breaker's count and the error on the tenant's enablement, where its admins see them,
and a ``plugin.failure`` audit event as the plugin."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.plugins import invoke
from core.plugins.effects import actor_for
from core.plugins.models import PluginEnablement
from core.settings import Settings


def failed(session: AsyncSession, row: PluginEnablement, settings: Settings, hook: str, error: str) -> None:
    invoke.record_failure(row, settings, error)
    audit.record(
        session,
        actor_for(row.plugin),
        action="plugin.failure",
        resource_type="Plugin",
        resource_id=row.plugin,
        outcome="failure",
        detail={"plugin": row.plugin, "hook": hook, "error": error[:500], "failures": row.failures},
    )
