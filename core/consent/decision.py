"""The consent decision point: may a tenant read one category of another tenant's records of a person?

Consents compile to Casbin policy lines (the model is ``core/consent_model.conf``: one line per person, grantee,
category and purpose, with its period, allow or deny, and the consent behind it; an explicit deny overrides any
allow). Casbin's own ``enforce`` costs ~450 us over one person's ~34 lines and grows with the number of lines (and
loading tens of thousands of lines takes seconds to minutes), so the lines are
indexed by (person, category, purpose) and evaluated with the model's exact matcher and effect: a check looks at
the few lines of one person, whatever the size of the network. The property test checks every answer against
Casbin's enforcer over the same lines and against a plain reference implementation of the rules.

The decision point is built per request from the database (:func:`load`), so a revoked or expired consent stops
access on the very next request: there is no cache to go stale. :meth:`DecisionPoint.decide` is the one function
every cross-tenant read asks.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.consent.categories import (
    BREAK_GLASS_CATEGORIES,
    BREAK_GLASS_PURPOSE,
    BREAK_GLASS_ROLES,
    CATEGORIES,
    DEFAULT_PURPOSES,
    PART2,
    PURPOSES,
    ROLE_PURPOSES,
    TREATING_KINDS,
)
from core.consent.models import BreakGlass, Consent, PatientLink

MODEL_PATH = Path(__file__).resolve().parent.parent / "consent_model.conf"
ANY = "*"
ALLOW = "allow"
DENY = "deny"
DEFAULT_SOURCE = "default:opt_out"
_BEGINNING = "0001-01-01T00:00:00.000000Z"
_END_OF_TIME = "9999-12-31T23:59:59.999999Z"

# What decided an answer.
OWN_TENANT = "own_tenant"
CONSENT = "consent"
NETWORK_DEFAULT = "network_default"
BREAK_THE_GLASS = "break_the_glass"
CONSENT_DENIED = "consent_denied"
NO_CONSENT = "no_consent"
ROLE = "role"


def stamp(value: datetime | None, *, end: bool = False) -> str:
    """A time as the policies hold it: fixed-width UTC text, so that text order is time order.

    Raises:
        ValueError: for a naive datetime (consent times are timezone-aware and compared in UTC).
    """
    if value is None:
        return _END_OF_TIME if end else _BEGINNING
    if value.tzinfo is None:
        raise ValueError("consent times must be timezone-aware")
    utc = value.astimezone(UTC)
    # The year zero-padded by hand: strftime's %Y gives "999", not "0999", on some platforms.
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ConsentTerms:
    """What the decision point needs of a consent (plain data, from a row or a test)."""

    id: uuid.UUID
    person_id: uuid.UUID
    decision: str  # permit | deny
    grantee_kind: str  # tenant | treating | network
    grantee_tenant_id: uuid.UUID | None
    categories: tuple[str, ...]
    purposes: tuple[str, ...]
    period_start: datetime
    period_end: datetime | None
    status: str = "active"  # active | revoked

    @classmethod
    def of(cls, row: Consent) -> ConsentTerms:
        return cls(
            id=row.id,
            person_id=row.person_id,
            decision=row.decision,
            grantee_kind=row.grantee_kind,
            grantee_tenant_id=row.grantee_tenant_id,
            categories=tuple(row.categories),
            purposes=tuple(row.purposes),
            period_start=row.period_start,
            period_end=row.period_end,
            status=row.status,
        )


@dataclass(frozen=True)
class Grant:
    """An open break-the-glass access: one user of one tenant, for one person, until ``expires_at``."""

    id: uuid.UUID
    person_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    opened_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AccessRequest:
    """One check: may ``tenant_id`` (a user with ``roles``) read ``category`` of ``person_id``'s record held by
    ``source_tenant_id``, for ``purpose``, at ``at``?"""

    tenant_id: uuid.UUID
    roles: tuple[str, ...]
    person_id: uuid.UUID
    category: str
    purpose: str
    at: datetime
    source_tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str
    consent_id: uuid.UUID | None = None
    break_glass_id: uuid.UUID | None = None

    @property
    def reason(self) -> str:
        """A sentence for the audit log and the access report."""
        return {
            OWN_TENANT: "own tenant's record (role permissions apply)",
            CONSENT: f"allowed by consent {self.consent_id}",
            NETWORK_DEFAULT: "allowed by the network's opt-out default",
            BREAK_THE_GLASS: f"emergency access (break-the-glass {self.break_glass_id})",
            CONSENT_DENIED: f"refused by consent {self.consent_id}",
            NO_CONSENT: "no consent allows it",
            ROLE: "the user's role may not read other tenants' records for this purpose",
        }[self.basis]


def compile_consents(
    consents: Iterable[ConsentTerms],
    treating: Mapping[uuid.UUID, Iterable[uuid.UUID]],
    network_default: str,
) -> list[tuple[str, ...]]:
    """The Casbin policy lines (``p`` lines of ``consent_model.conf``) of ``consents`` and the network default.

    ``treating`` gives, for each person, the tenants that count as their treating facilities (hospitals and
    clinics holding a linked record). Revoked consents compile to nothing. A permit for Part 2 records compiles
    only when the consent names its recipient tenant: a class of tenants never receives them.
    """
    lines: list[tuple[str, ...]] = []
    for consent in sorted(consents, key=lambda c: str(c.id)):
        if consent.status != "active":
            continue
        person = str(consent.person_id)
        if consent.grantee_kind == "tenant":
            grantees = [str(consent.grantee_tenant_id)]
        elif consent.grantee_kind == "network":
            grantees = [ANY]
        else:
            grantees = sorted(str(t) for t in treating.get(consent.person_id, ()))
        eft = ALLOW if consent.decision == "permit" else DENY
        start, end = stamp(consent.period_start), stamp(consent.period_end, end=True)
        source = f"consent:{consent.id}"
        for category in consent.categories:
            if category == PART2 and eft == ALLOW and consent.grantee_kind != "tenant":
                continue
            for purpose in consent.purposes:
                for grantee in grantees:
                    lines.append(("p", person, grantee, category, purpose, start, end, eft, source))
    if network_default == "opt_out":
        for category in CATEGORIES:
            if category == PART2:
                continue
            for purpose in DEFAULT_PURPOSES:
                lines.append(("p", ANY, ANY, category, purpose, _BEGINNING, _END_OF_TIME, ALLOW, DEFAULT_SOURCE))
    return lines


@dataclass(frozen=True)
class _Line:
    grantee: str
    start: str
    end: str
    eft: str
    source: str


@dataclass
class DecisionPoint:
    """Compiled policy lines indexed by (person, category, purpose), plus the open break-the-glass grants."""

    _index: dict[tuple[str, str, str], list[_Line]] = field(default_factory=dict)
    _grants: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], list[Grant]] = field(default_factory=dict)

    @classmethod
    def build(cls, lines: Iterable[Sequence[str]], grants: Iterable[Grant] = ()) -> DecisionPoint:
        index: dict[tuple[str, str, str], list[_Line]] = defaultdict(list)
        for line in lines:
            _, person, grantee, category, purpose, start, end, eft, source = line
            index[(person, category, purpose)].append(_Line(grantee, start, end, eft, source))
        by_user: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], list[Grant]] = defaultdict(list)
        for grant in grants:
            by_user[(grant.person_id, grant.tenant_id, grant.user_id)].append(grant)
        return cls(dict(index), dict(by_user))

    def decide(self, request: AccessRequest) -> Decision:
        """Allow or deny, with what decided it. Deny by default."""
        if request.category not in CATEGORIES or request.purpose not in PURPOSES:
            raise ValueError(f"unknown category or purpose: {request.category!r}, {request.purpose!r}")
        if request.source_tenant_id is not None and request.source_tenant_id == request.tenant_id:
            return Decision(True, OWN_TENANT)
        if not ROLE_PURPOSES[request.purpose].intersection(request.roles):
            return Decision(False, ROLE)
        at = stamp(request.at)
        person, grantee = str(request.person_id), str(request.tenant_id)
        allowed: _Line | None = None
        denied: _Line | None = None
        for key in ((person, request.category, request.purpose), (ANY, request.category, request.purpose)):
            for line in self._index.get(key, ()):
                if (line.grantee == ANY or line.grantee == grantee) and line.start <= at < line.end:
                    if line.eft == DENY:
                        denied = denied or line
                    elif allowed is None or (allowed.source == DEFAULT_SOURCE and line.source != DEFAULT_SOURCE):
                        allowed = line
        if allowed is not None and denied is None:
            if allowed.source == DEFAULT_SOURCE:
                return Decision(True, NETWORK_DEFAULT)
            return Decision(True, CONSENT, consent_id=_consent_id(allowed.source))
        grant = self._break_glass(request)
        if grant is not None:
            return Decision(True, BREAK_THE_GLASS, break_glass_id=grant.id)
        if denied is not None:
            return Decision(False, CONSENT_DENIED, consent_id=_consent_id(denied.source))
        return Decision(False, NO_CONSENT)

    def _break_glass(self, request: AccessRequest) -> Grant | None:
        if request.user_id is None or request.purpose != BREAK_GLASS_PURPOSE:
            return None
        if request.category not in BREAK_GLASS_CATEGORIES or not BREAK_GLASS_ROLES.intersection(request.roles):
            return None
        for grant in self._grants.get((request.person_id, request.tenant_id, request.user_id), ()):
            if grant.opened_at <= request.at < grant.expires_at:
                return grant
        return None


def _consent_id(source: str) -> uuid.UUID:
    return uuid.UUID(source.removeprefix("consent:"))


def casbin_enforcer(lines: Iterable[Sequence[str]]) -> object:
    """Casbin's own enforcer over the same lines (for the property test and the benchmark's comparison)."""
    import casbin
    from casbin.persist.adapter import Adapter

    rows = [list(line) for line in lines]

    class _Lines(Adapter):
        def load_policy(self, model: casbin.Model) -> None:
            for row in rows:
                model.add_policy("p", row[0], row[1:])

    return casbin.Enforcer(str(MODEL_PATH), _Lines())


async def treating_tenants(session: AsyncSession, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
    """For each person, the hospitals and clinics (active tenants) that hold a linked record of them."""
    from tenants.models import Tenant

    wanted = list(set(person_ids))
    found: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    if not wanted:
        return found
    rows = await session.execute(
        select(PatientLink.person_id, PatientLink.tenant_id)
        .join(Tenant, Tenant.id == PatientLink.tenant_id)
        .where(PatientLink.person_id.in_(wanted), Tenant.kind.in_(TREATING_KINDS), Tenant.status == "active")
    )
    for person_id, tenant_id in rows:
        found[person_id].add(tenant_id)
    return found


async def load(
    session: AsyncSession, person_ids: Iterable[uuid.UUID], network_default: str, *, now: datetime
) -> DecisionPoint:
    """The decision point for these people, read now from the database (consents, links, open grants)."""
    wanted = list(set(person_ids))
    if not wanted:
        return DecisionPoint.build(compile_consents((), {}, network_default))
    rows = await session.scalars(select(Consent).where(Consent.person_id.in_(wanted), Consent.status == "active"))
    consents = [ConsentTerms.of(row) for row in rows]
    treating = await treating_tenants(session, wanted)
    grants = [
        Grant(g.id, g.person_id, g.tenant_id, g.user_id, g.opened_at, g.expires_at)
        for g in await session.scalars(
            select(BreakGlass).where(BreakGlass.person_id.in_(wanted), BreakGlass.expires_at > now)
        )
    ]
    return DecisionPoint.build(compile_consents(consents, treating, network_default), grants)
