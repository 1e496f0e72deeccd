"""The authenticated caller of a request or job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.audit import Actor
from core.authz import Authorizer
from core.errors import Forbidden

NETWORK_DOMAIN = "network"


@dataclass(frozen=True)
class Principal:
    """A user acting in one tenant (``tenant_id``) or, for network administrators, in the network."""

    user_id: uuid.UUID
    email: str
    full_name: str
    tenant_id: uuid.UUID | None
    roles: tuple[str, ...]
    authorizer: Authorizer

    @property
    def domain(self) -> str:
        return str(self.tenant_id) if self.tenant_id is not None else NETWORK_DOMAIN

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, roles=self.roles)

    def can(self, obj: str, act: str) -> bool:
        return self.authorizer.allows(str(self.user_id), self.domain, obj, act)

    def require(self, obj: str, act: str) -> None:
        """Raise :class:`Forbidden` unless one of the caller's roles grants ``act`` on ``obj``."""
        if not self.can(obj, act):
            raise Forbidden(f"your role does not allow '{act}' on '{obj}'")
