"""Input and output shapes for tenants, users and invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.inputs import SAFE_LINE, Email, normalise_emails

Slug = Annotated[str, msgspec.Meta(min_length=2, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=256, pattern=SAFE_LINE)]
TenantKind = Literal["hospital", "clinic", "partner"]
TenantRole = Literal["tenant_admin", "care_manager", "clinician", "chw", "partner_staff", "privacy_officer"]
Roles = Annotated[list[TenantRole], msgspec.Meta(min_length=1, max_length=5)]


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    slug: Slug
    name: DisplayName
    kind: TenantKind


class TenantOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    status: str
    created_at: datetime
    activated_at: datetime | None
    suspended_at: datetime | None
    member_count: int | None = None


class InvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A network administrator's invitation into a tenant: by default, its first administrator."""

    email: Email
    roles: Roles = msgspec.field(default_factory=lambda: ["tenant_admin"])

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class MemberInvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A tenant administrator's invitation: the roles are always named."""

    email: Email
    roles: Roles

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class InvitationSummary(msgspec.Struct):
    id: uuid.UUID
    email: str
    roles: list[str]
    expires_at: datetime
    invited_by: uuid.UUID | None
    created_at: datetime


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    roles: list[str]
    expires_at: datetime
    token: str
    """Shown once; only its hash is stored. Deliver it to the invitee out of band."""


class InvitationAccept(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=20, max_length=200, pattern=SAFE_LINE)]
    full_name: DisplayName
    password: Password


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    full_name: DisplayName
    roles: Roles
    password: Password

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class RolesUpdate(msgspec.Struct, forbid_unknown_fields=True):
    roles: Roles


class MemberOut(msgspec.Struct):
    user_id: uuid.UUID
    email: str
    full_name: str
    roles: list[str]
    active: bool


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=SAFE_LINE)]
    tenant: Slug | None = None
    """The tenant to act in; leave out for a network administrator's network token."""


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=SAFE_LINE)]
    new_password: Password
