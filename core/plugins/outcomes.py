"""What the host records when a contained plugin call fails where no admin is waiting for the answer (a job, a
coordinator's search): the breaker's count and the error on the tenant's enablement, where its admins see them,
and a ``plugin.failure`` audit event as the plugin; and which database failures are a record's fault."""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
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


def database_refusal(exc: BaseException) -> str | None:
    """Why the database refused a record's values (SQLSTATE class 22, a data exception such as a value too long
    for its column, or 23, an integrity constraint), or None for any other failure (the database itself, to be
    tried again). asyncpg's errors reach us as plain DBAPIError with the state on the driver's exception."""
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    if not isinstance(exc, IntegrityError | DataError) and not (state and str(state)[:2] in ("22", "23")):
        return None
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"the record would not take this: {text[0][:300] if text else type(exc).__name__}"
