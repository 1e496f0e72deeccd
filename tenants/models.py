"""Network-level tables: the network, its tenants, users, memberships and invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

TENANT_KINDS = ("hospital", "clinic", "partner")
TENANT_STATUSES = ("pending", "active", "suspended")
ROLES = (
    "network_admin",
    "tenant_admin",
    "care_manager",
    "clinician",
    "chw",
    "partner_staff",
    "privacy_officer",
    "patient",
)
TENANT_ROLES = tuple(r for r in ROLES if r != "network_admin")
# A patient's portal account: a membership holding only this role, linked to one patient record.
PATIENT_ROLE = "patient"
NETWORK_DOMAIN = "network"
DEFAULT_LINK_SYSTEM = "urn:carehub:network-id"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Network(IdMixin, TimestampMixin, Base):
    __tablename__ = "networks"

    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # What crosses tenants without a consent: nothing (opt_in) or, under opt_out, every category but
    # substance use disorder records, for treatment and care coordination, unless the patient refused.
    consent_default: Mapped[str] = mapped_column(String(8), default="opt_in", server_default="opt_in")
    # The identifier systems that link records of different tenants automatically (shared across the network,
    # e.g. the network id and insurers' member ids); a tenant's own identifier systems never do.
    link_systems: Mapped[list[Any]] = mapped_column(
        JSON, default=lambda: [DEFAULT_LINK_SYSTEM], server_default=f'["{DEFAULT_LINK_SYSTEM}"]'
    )


class Tenant(IdMixin, TimestampMixin, Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(_in("kind", TENANT_KINDS), name="kind"),
        CheckConstraint(_in("status", TENANT_STATUSES), name="status"),
    )

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id"), index=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    activated_at: Mapped[datetime | None]
    suspended_at: Mapped[datetime | None]
    # Tokens issued before this time are refused (set on suspension, so that reactivation revives none).
    tokens_valid_after: Mapped[datetime | None]


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("network_role IS NULL OR network_role = 'network_admin'", name="network_role"),)

    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    network_role: Mapped[str | None] = mapped_column(String(32))
    # Bumped on sign-out and password change: every token carrying an older version is refused.
    token_version: Mapped[int] = mapped_column(default=1)
    # Consecutive failed sign-ins; at the limit the account is locked until ``locked_until``.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]


class Membership(IdMixin, TimestampMixin, TenantOwned, Base):
    """A user's place in one tenant, with the roles they hold there."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Set for a patient's portal account: the one patient record this member may see.
    patient_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    # Tokens issued before this time are refused here (set on removal, so that re-adding revives none).
    tokens_valid_after: Mapped[datetime | None]


class Invitation(IdMixin, TimestampMixin, Base):
    """A one-time invitation to join a tenant (only a hash of the token is kept)."""

    __tablename__ = "invitations"
    __table_args__ = (ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Wrong passwords given for an existing account; the invitation is revoked at the limit.
    failed_attempts: Mapped[int] = mapped_column(default=0)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # A portal invitation: the account joins as this patient (role ``patient`` only).
    patient_id: Mapped[uuid.UUID | None]
