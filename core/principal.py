"""The authenticated caller of a request or job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.audit import Actor
from core.authz import Authorizer
from core.errors import Forbidden

NETWORK_DOMAIN = "network"
# What a tenant's administrators may do while the tenant is pending activation: set up its people.
SETUP_OBJECTS = frozenset({"users", "audit"})


@dataclass(frozen=True)
class Principal:
    """A user acting in one tenant (``tenant_id``) or, for network administrators, in the network."""

    user_id: uuid.UUID
    email: str
    full_name: str
    tenant_id: uuid.UUID | None
    roles: tuple[str, ...]
    authorizer: Authorizer
    tenant_status: str | None = None
    # Set when the caller is a patient using the portal: the one patient record they may see.
    patient_id: uuid.UUID | None = None

    @property
    def is_patient(self) -> bool:
        return self.patient_id is not None

    @property
    def domain(self) -> str:
        return str(self.tenant_id) if self.tenant_id is not None else NETWORK_DOMAIN

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, roles=self.roles)

    def can(self, obj: str, act: str) -> bool:
        """Whether the caller's roles (as read for this request) grant ``act`` on ``obj``."""
        if self.tenant_status == "pending" and obj not in SETUP_OBJECTS:
            return False
        return self.authorizer.decide(self.roles, self.domain, obj, act)

    def require(self, obj: str, act: str) -> None:
        """Raise :class:`Forbidden` unless one of the caller's roles grants ``act`` on ``obj``."""
        if not self.can(obj, act):
            if self.tenant_status == "pending" and obj not in SETUP_OBJECTS:
                detail = "the tenant is pending activation: only user and invitation set-up is open"
            else:
                detail = f"your role does not allow '{act}' on '{obj}'"
            raise Forbidden(detail, action=f"{obj}.{act}", resource_type=obj)
