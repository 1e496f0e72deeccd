"""Network-level tables of consent: people, the links of their tenant-local records, consents, break-the-glass.

These rows hold no clinical data (a person is an id; a link names a tenant's record and the demographic keys
used to match it), so they are network-wide tables without row-level security. Every read of another tenant's
*records* still happens inside that tenant's context (see :mod:`core.consent.network_view`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from core.consent.categories import DECISIONS, GRANTEE_KINDS, SOURCE_KINDS
from core.db import Base, IdMixin, utcnow

LINK_METHODS = ("new", "identifier", "confirmed", "unlinked")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Person(IdMixin, Base):
    """The network-level person: the same human across tenants. Only an id; the records stay in the tenants."""

    __tablename__ = "persons"

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PatientLink(IdMixin, Base):
    """One tenant-local patient record and the person it belongs to (every patient record has one).

    The demographic keys (normalised names, birth date, sex, postal code) are what a match suggestion compares;
    they are never shown to another tenant.
    """

    __tablename__ = "patient_links"
    __table_args__ = (
        UniqueConstraint("tenant_id", "patient_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"], ondelete="CASCADE"),
        CheckConstraint(_in("method", LINK_METHODS), name="method"),
        Index("ix_patient_links_birth_date", "birth_date"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    patient_id: Mapped[uuid.UUID]
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="RESTRICT"), index=True)
    # How the record came to its person: a new person, a shared identifier, an administrator's confirmation of
    # a suggested match, or an administrator's unlink (a person of its own again).
    method: Mapped[str] = mapped_column(String(16), default="new")
    linked_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)
    given_key: Mapped[str] = mapped_column(String(100), default="")
    family_key: Mapped[str] = mapped_column(String(100), default="")
    birth_date: Mapped[date]
    sex: Mapped[str] = mapped_column(String(16))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    # Set by a clinic for its record: this clinic is the person's primary care (transition-of-care tasks go there).
    primary_care: Mapped[bool] = mapped_column(default=False, server_default=false())


class PatientLinkKey(IdMixin, Base):
    """A shared identifier (network id, insurance member id, ...) of a linked record: records sharing one link."""

    __tablename__ = "patient_link_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "patient_id", "system", "value"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"], ondelete="CASCADE"),
        Index("ix_patient_link_keys_system_value", "system", "value"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    patient_id: Mapped[uuid.UUID]
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))


class LinkExclusion(IdMixin, Base):
    """An administrator undid a link: this record is not linked to that person again automatically."""

    __tablename__ = "link_exclusions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "patient_id", "person_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    patient_id: Mapped[uuid.UUID]
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(IdMixin, Base):
    """A person's consent (or refusal): who may see which categories, for which purposes, during which period.

    ``status`` is ``active`` or ``revoked``; "expired" is derived from ``period_end`` at the time of each check
    (times are timezone-aware and compared in UTC).
    """

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
        CheckConstraint(_in("grantee_kind", GRANTEE_KINDS), name="grantee_kind"),
        CheckConstraint("(grantee_kind = 'tenant') = (grantee_tenant_id IS NOT NULL)", name="grantee_tenant"),
        CheckConstraint("status IN ('active', 'revoked')", name="status"),
        CheckConstraint(_in("source_kind", SOURCE_KINDS), name="source_kind"),
        UniqueConstraint("recorded_tenant_id", "identifier_system", "identifier_value"),
    )

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="RESTRICT"), index=True)
    decision: Mapped[str] = mapped_column(String(8), default="permit")
    grantee_kind: Mapped[str] = mapped_column(String(16))
    grantee_tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    categories: Mapped[list[Any]] = mapped_column(JSON)
    purposes: Mapped[list[Any]] = mapped_column(JSON)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="active")
    source_kind: Mapped[str] = mapped_column(String(16))
    source_reference: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(String(1000))
    # Where and by whom it was recorded: the tenant, its patient record, the user (none for a portal click).
    recorded_tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    recorded_patient_id: Mapped[uuid.UUID]
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revocation_reason: Mapped[str | None] = mapped_column(String(500))
    # A business identifier given by the client (FHIR Consent.identifier), unique within the recording tenant.
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))


class BreakGlass(IdMixin, Base):
    """An emergency access opened by a clinician without consent: time-boxed, treatment categories only."""

    __tablename__ = "break_glass_grants"
    __table_args__ = (Index("ix_break_glass_grants_person_user", "person_id", "user_id"),)

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="RESTRICT"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    patient_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    reason: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
