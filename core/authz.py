"""Role permissions, decided by Casbin's RBAC-with-domains model (domains are tenants).

Permission rules (``p``: role, domain, object, action) live in the ``casbin_rules`` table and are loaded
at start-up. Role assignments live in the memberships table and are read fresh on every request, so a role
change takes effect on the next request in every process. A decision depends only on the request's role set,
domain, object and action: Casbin decides each such question once, for a subject that holds exactly that role
set, and the answer is kept. Requests then decide with a dictionary look-up, without changing the enforcer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import casbin
from casbin.persist.adapter import Adapter
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

logging.getLogger("casbin").setLevel(logging.WARNING)  # it logs every policy line at INFO
MODEL_PATH = Path(__file__).with_name("rbac_model.conf")

# The shipped permission set, written by the migrations. Tenants may add rows for their own domain.
DEFAULT_POLICIES: tuple[tuple[str, str, str, str], ...] = (
    ("network_admin", "network", "tenants", "*"),
    ("network_admin", "network", "network_audit", "read"),
    ("tenant_admin", "*", "patients", "*"),
    ("tenant_admin", "*", "users", "*"),
    ("tenant_admin", "*", "audit", "read"),
    ("care_manager", "*", "patients", "*"),
    ("clinician", "*", "patients", "read"),
    ("clinician", "*", "patients", "write"),
    ("chw", "*", "patients", "read"),
    ("partner_staff", "*", "patients", "read"),
    ("partner_staff", "*", "patients", "write"),
    # Care coordination (migration 0002).
    *(
        (role, "*", obj, "*")
        for role in ("tenant_admin", "care_manager")
        for obj in ("careteams", "careplans", "careplan_templates", "tasks", "appointments", "threads", "results")
    ),
    *(("tenant_admin", "*", "education", "*"), ("care_manager", "*", "education", "*")),
    *(
        ("clinician", "*", obj, act)
        for obj in ("careteams", "careplans", "results", "education")
        for act in ("read", "write")
    ),
    ("clinician", "*", "careplan_templates", "read"),
    ("clinician", "*", "tasks", "*"),
    ("clinician", "*", "appointments", "*"),
    ("clinician", "*", "threads", "*"),
    *(("chw", "*", obj, "read") for obj in ("careteams", "careplans", "careplan_templates")),
    *(("chw", "*", obj, act) for obj in ("tasks", "appointments", "education") for act in ("read", "write")),
    ("chw", "*", "threads", "*"),
    ("partner_staff", "*", "careteams", "read"),
    ("partner_staff", "*", "tasks", "read"),
    ("partner_staff", "*", "tasks", "write"),
    ("partner_staff", "*", "appointments", "read"),
    ("partner_staff", "*", "threads", "*"),
    ("patient", "*", "portal", "*"),
    # Background jobs (migration 0003): the dead-letter list.
    ("tenant_admin", "*", "jobs", "*"),
    # Every staff member's own alert inbox.
    *((role, "*", "alerts", "*") for role in ("tenant_admin", "care_manager", "clinician", "chw", "partner_staff")),
    # Notifications (migration 0004): the tenant's alert rule settings.
    ("tenant_admin", "*", "alert_settings", "*"),
    # Consent and sharing across the network (migration 0005).
    ("network_admin", "network", "consent_default", "*"),
    *((role, "*", "consents", "*") for role in ("tenant_admin", "care_manager", "clinician")),
    *((role, "*", "consents", "read") for role in ("chw", "privacy_officer")),
    ("tenant_admin", "*", "links", "*"),
    *((role, "*", "links", "read") for role in ("care_manager", "clinician", "privacy_officer")),
    *(
        (role, "*", "network_view", "read")
        for role in ("tenant_admin", "care_manager", "clinician", "chw", "partner_staff")
    ),
    ("clinician", "*", "break_glass", "*"),
    *((role, "*", "access_report", "read") for role in ("tenant_admin", "privacy_officer")),
    ("privacy_officer", "*", "audit", "read"),
    ("privacy_officer", "*", "alerts", "*"),
    # Hospital encounters (discharges start transition-of-care tasks).
    *((role, "*", "encounters", "*") for role in ("tenant_admin", "care_manager", "clinician")),
    ("chw", "*", "encounters", "read"),
    # Plugins (migration 0007): a tenant's admins enable and configure them and review inbound messages; the
    # network admin allows or forbids one for the whole network.
    ("tenant_admin", "*", "plugins", "*"),
    ("network_admin", "network", "plugins", "*"),
    *((role, "*", "conditions", "read") for role in ("tenant_admin", "care_manager", "clinician", "chw")),
    # The community resource directory (migration 0008): every staff role that coordinates care searches it.
    *(
        (role, "*", "directory", "read")
        for role in ("tenant_admin", "care_manager", "clinician", "chw", "partner_staff")
    ),
)


class CasbinRule(Base):
    __tablename__ = "casbin_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(8))
    v0: Mapped[str] = mapped_column(String(255), default="")
    v1: Mapped[str] = mapped_column(String(255), default="")
    v2: Mapped[str] = mapped_column(String(255), default="")
    v3: Mapped[str] = mapped_column(String(255), default="")
    v4: Mapped[str] = mapped_column(String(255), default="")
    v5: Mapped[str] = mapped_column(String(255), default="")


class _RowsAdapter(Adapter):
    """Feeds rows already read from ``casbin_rules`` into a model (Casbin's adapters are synchronous)."""

    def __init__(self, rows: Sequence[Sequence[str]]) -> None:
        self._rows = rows

    def load_policy(self, model: casbin.Model) -> None:
        for row in self._rows:
            values = [v for v in row if v]
            ptype = values[0]
            model.add_policy(ptype[0], ptype, values[1:])


async def load_rules(session: AsyncSession) -> list[tuple[str, ...]]:
    rows = await session.execute(
        select(
            CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3, CasbinRule.v4, CasbinRule.v5
        ).order_by(CasbinRule.id)
    )
    return [tuple(r) for r in rows.all()]


class Authorizer:
    """The role decision point."""

    def __init__(self, rules: Sequence[Sequence[str]]) -> None:
        self._enforcer = casbin.Enforcer(str(MODEL_PATH), _RowsAdapter(rules))
        self._decisions: dict[tuple[frozenset[str], str, str, str], bool] = {}
        self._role_sets: set[tuple[frozenset[str], str]] = set()
        self._lock = threading.Lock()  # job handler threads decide too

    def decide(self, roles: Iterable[str], domain: str, obj: str, act: str) -> bool:
        """Whether a caller holding exactly ``roles`` in ``domain`` may ``act`` on ``obj``."""
        key = (frozenset(roles), domain, obj, act)
        decision = self._decisions.get(key)
        if decision is None:
            with self._lock:
                decision = self._decide_with_casbin(*key)
                self._decisions[key] = decision
        return decision

    def _decide_with_casbin(self, roles: frozenset[str], domain: str, obj: str, act: str) -> bool:
        # A subject standing for the role set (no user id can look like it): its roles are set once per
        # (role set, domain) and never change, so the enforcer is not mutated per request.
        subject = "role-set:" + ",".join(sorted(roles))
        if (roles, domain) not in self._role_sets:
            for role in roles:
                self._enforcer.add_role_for_user_in_domain(subject, role, domain)
            self._role_sets.add((roles, domain))
        return bool(self._enforcer.enforce(subject, domain, obj, act))

    def sync_roles(self, user: str, domain: str, roles: Iterable[str]) -> None:
        """Make the user's roles in ``domain`` equal ``roles`` (for :meth:`allows`; requests use :meth:`decide`)."""
        with self._lock:
            wanted = set(roles)
            held = set(self._enforcer.get_roles_for_user_in_domain(user, domain))
            for role in held - wanted:
                self._enforcer.delete_roles_for_user_in_domain(user, role, domain)
            for role in wanted - held:
                self._enforcer.add_role_for_user_in_domain(user, role, domain)

    def allows(self, user: str, domain: str, obj: str, act: str) -> bool:
        """Casbin's own answer for a user whose roles were given with :meth:`sync_roles`."""
        return bool(self._enforcer.enforce(user, domain, obj, act))
