"""Every table of carehub, for migrations and the schema drift check."""

from __future__ import annotations

from sqlalchemy import MetaData

from core import audit, authz, outbox
from core.alerts import models as alert_models
from core.appointments import models as appointment_models
from core.careplans import models as careplan_models
from core.careteams import models as careteam_models
from core.conditions import models as condition_models
from core.consent import models as consent_models
from core.db import Base
from core.encounters import models as encounter_models
from core.jobs import models as job_models
from core.messaging import models as messaging_models
from core.notify import models as notify_models
from core.patients import models as patient_models
from core.plugins import models as plugin_models
from core.results import models as result_models
from core.tasks import models as task_models
from tenants import models as tenant_models
from tenants.isolation import TenantOwned

_MODULES = (
    audit,
    authz,
    outbox,
    patient_models,
    tenant_models,
    careteam_models,
    careplan_models,
    task_models,
    appointment_models,
    messaging_models,
    result_models,
    job_models,
    alert_models,
    notify_models,
    consent_models,
    encounter_models,
    condition_models,
    plugin_models,
)


def metadata() -> MetaData:
    return Base.metadata


def tenant_owned_tables() -> list[str]:
    """Names of the tables whose rows belong to one tenant (protected by row-level security)."""
    return sorted(
        str(getattr(mapper.local_table, "name", ""))
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    )
