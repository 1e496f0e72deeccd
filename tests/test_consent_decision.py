"""The consent decision point against the rules written out plainly, and against Casbin's own enforcer.

The decision point answers every cross-tenant read from an index of compiled policy lines. Its answers are checked
here against a reference that reads the consents themselves, rule by rule, so that a mistake in the compiler, the
index or the time encoding shows up as a disagreement; and against Casbin's enforcer over the same lines, so that
the index keeps the model's exact meaning.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.consent.categories import (
    BREAK_GLASS_CATEGORIES,
    BREAK_GLASS_DURATION,
    BREAK_GLASS_ROLES,
    CATEGORIES,
    PURPOSES,
    ROLE_PURPOSES,
)
from core.consent.decision import (
    BREAK_THE_GLASS,
    CONSENT,
    CONSENT_DENIED,
    NETWORK_DEFAULT,
    NO_CONSENT,
    OWN_TENANT,
    ROLE,
    AccessRequest,
    ConsentTerms,
    Decision,
    DecisionPoint,
    Grant,
    casbin_enforcer,
    compile_consents,
    stamp,
)

T_ = TypeVar("T_")

PERSONS = tuple(uuid.UUID(int=0x100 + n) for n in range(3))
TENANTS = tuple(uuid.UUID(int=0x200 + n) for n in range(4))
USERS = tuple(uuid.UUID(int=0x300 + n) for n in range(3))
ALL_ROLES = ("tenant_admin", "care_manager", "clinician", "chw", "partner_staff", "privacy_officer")
# Offsets chosen so that local wall-clock text and UTC order disagree (half and quarter hours, both signs).
OFFSETS = tuple(
    timezone(timedelta(minutes=m)) for m in (0, -12 * 60, -5 * 60, -(3 * 60 + 30), 5 * 60 + 45, 9 * 60, 14 * 60)
)
BASE = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=45)
ONE_US = timedelta(microseconds=1)

# The rules in plain words, written out here rather than imported, so that the reference does not share them.
PART_2 = "substance_use_disorder"
OPT_OUT_PURPOSES = ("treatment", "care_coordination")


def in_zone(instant: datetime, zone: timezone) -> datetime:
    return instant.astimezone(zone)


def pick(draw: st.DrawFn, choices: Sequence[T_]) -> T_:
    """One of ``choices``: one shared strategy for every pick, as building a strategy per draw is what costs."""
    return choices[draw(INDEX) % len(choices)]


INDEX = st.integers(0, 2**16 - 1)
NUDGES = (timedelta(0), -ONE_US, ONE_US)
CATEGORY_SETS = st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=4, unique=True).map(tuple)
PURPOSE_SETS = st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True).map(tuple)
TENANT_SETS = st.lists(st.sampled_from(TENANTS), max_size=3).map(set)
ROLE_LISTS = st.lists(st.sampled_from(ALL_ROLES), max_size=2, unique=True)
ZONES = st.sampled_from(OFFSETS)
INSTANTS = st.builds(lambda n, zone: in_zone(BASE + n * STEP, zone), st.integers(-6, 6), ZONES)
IDS = st.integers(0, 2**64).map(lambda n: uuid.UUID(int=n))


def near(draw: st.DrawFn, edges: Sequence[datetime]) -> datetime:
    """On one of ``edges``, or a microsecond either side, in some time zone."""
    return in_zone(pick(draw, edges) + pick(draw, NUDGES), draw(ZONES))


@st.composite
def consents(draw: st.DrawFn) -> ConsentTerms:
    kind = pick(draw, ("tenant", "treating", "network"))
    start = draw(INSTANTS)
    end = draw(st.none() | INSTANTS)
    return ConsentTerms(
        id=draw(IDS),
        person_id=pick(draw, PERSONS),
        decision=pick(draw, ("permit", "permit", "deny")),
        grantee_kind=kind,
        grantee_tenant_id=pick(draw, TENANTS) if kind == "tenant" else None,
        categories=draw(CATEGORY_SETS),
        purposes=draw(PURPOSE_SETS),
        period_start=start,
        period_end=None if end is None else end if end > start else start + STEP,
        status=pick(draw, ("active", "active", "active", "revoked")),
    )


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    opened = draw(INSTANTS)
    return Grant(
        id=draw(IDS),
        person_id=pick(draw, PERSONS),
        tenant_id=pick(draw, TENANTS),
        user_id=pick(draw, USERS),
        opened_at=opened,
        expires_at=in_zone(opened + BREAK_GLASS_DURATION, draw(ZONES)),
    )


CONSENT_LISTS = st.lists(consents(), min_size=1, max_size=8)
GRANT_LISTS = st.lists(grants(), min_size=1, max_size=3)


@dataclass(frozen=True)
class World:
    consents: list[ConsentTerms]
    treating: dict[uuid.UUID, set[uuid.UUID]]
    network_default: str
    grants: list[Grant]
    requests: list[AccessRequest]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    terms = draw(CONSENT_LISTS)
    treating = {person: draw(TENANT_SETS) for person in PERSONS}
    opened = draw(GRANT_LISTS)
    # Every boundary of a period or a grant: request times fall on them, just around them, or between.
    boundaries = [BASE]
    for c in terms:
        boundaries += [c.period_start] + ([c.period_end] if c.period_end else [])
    for g in opened:
        boundaries += [g.opened_at, g.expires_at, g.opened_at + STEP]
    requests = []
    for _ in range(1 + pick(draw, range(12))):
        # Most requests aim at a consent or a grant, so that consents apply and break-the-glass comes up often.
        anchor = pick(draw, ("none", "consent", "consent", "grant"))
        person, tenant, user = pick(draw, PERSONS), pick(draw, TENANTS), pick(draw, (None, *USERS))
        category, purpose = pick(draw, CATEGORIES), pick(draw, PURPOSES)
        at = near(draw, boundaries) + pick(draw, (timedelta(0), STEP / 2))
        roles = draw(ROLE_LISTS)
        if anchor == "consent":
            c = pick(draw, terms)
            person, category, purpose = c.person_id, pick(draw, c.categories), pick(draw, c.purposes)
            at = near(draw, [c.period_start] + ([c.period_end] if c.period_end else []))
            if c.grantee_kind == "tenant" and pick(draw, (True, True, False)):
                tenant = c.grantee_tenant_id or tenant
            elif c.grantee_kind == "treating" and treating[person] and pick(draw, (True, True, False)):
                tenant = pick(draw, sorted(treating[person]))
        elif anchor == "grant":
            g = pick(draw, opened)
            person, tenant, user = g.person_id, g.tenant_id, g.user_id
            at = near(draw, (g.opened_at, g.opened_at + STEP, g.expires_at))
            purpose = pick(draw, ("treatment", "treatment", "treatment", purpose))
            category = pick(draw, (*sorted(BREAK_GLASS_CATEGORIES), category, category, category))
            roles.append(pick(draw, ("clinician", "care_manager")))
        # Mostly a role that may ask for the purpose: the role gate alone would answer too many requests.
        if anchor == "consent" or (anchor == "none" and pick(draw, (True, False))):
            roles.append(pick(draw, sorted(ROLE_PURPOSES[purpose])))
        requests.append(
            AccessRequest(
                tenant_id=tenant,
                roles=tuple(roles),
                person_id=person,
                category=category,
                purpose=purpose,
                at=at,
                source_tenant_id=pick(draw, (None, tenant, *(t for t in TENANTS if t != tenant))),
                user_id=user,
            )
        )
    return World(terms, treating, pick(draw, ("opt_in", "opt_in", "opt_out")), opened, requests)


@dataclass(frozen=True)
class Expected:
    """What the rules say of one request, and the consents and grants that may be cited for it."""

    allowed: bool
    basis: str
    permits: frozenset[uuid.UUID] = frozenset()
    denies: frozenset[uuid.UUID] = frozenset()
    open_grants: frozenset[uuid.UUID] = frozenset()
    by_consents: bool = False  # allowed by consents or the default, before break-the-glass


def applies(c: ConsentTerms, r: AccessRequest, treating: dict[uuid.UUID, set[uuid.UUID]]) -> bool:
    if c.status != "active" or c.person_id != r.person_id:
        return False
    if c.grantee_kind == "tenant":
        grantee_matches = c.grantee_tenant_id == r.tenant_id
    elif c.grantee_kind == "network":
        grantee_matches = True
    else:
        grantee_matches = r.tenant_id in treating.get(c.person_id, set())
    if not grantee_matches or r.category not in c.categories or r.purpose not in c.purposes:
        return False
    at = r.at.astimezone(UTC)
    if not (c.period_start.astimezone(UTC) <= at and (c.period_end is None or at < c.period_end.astimezone(UTC))):
        return False
    # Part 2 records: a permit reaches only a tenant it names, never a class of tenants.
    return not (c.decision == "permit" and r.category == PART_2 and c.grantee_kind != "tenant")


def reference(world: World, r: AccessRequest) -> Expected:
    if r.source_tenant_id == r.tenant_id:
        return Expected(True, OWN_TENANT)
    if not set(r.roles) & ROLE_PURPOSES[r.purpose]:
        return Expected(False, ROLE)
    applying = [c for c in world.consents if applies(c, r, world.treating)]
    permits = frozenset(c.id for c in applying if c.decision == "permit")
    denies = frozenset(c.id for c in applying if c.decision == "deny")
    default = world.network_default == "opt_out" and r.category != PART_2 and r.purpose in OPT_OUT_PURPOSES
    if not denies and permits:
        return Expected(True, CONSENT, permits=permits, by_consents=True)
    if not denies and default:
        return Expected(True, NETWORK_DEFAULT, by_consents=True)
    at = r.at.astimezone(UTC)
    open_grants = frozenset(
        g.id
        for g in world.grants
        if (g.person_id, g.tenant_id, g.user_id) == (r.person_id, r.tenant_id, r.user_id)
        and g.opened_at.astimezone(UTC) <= at < g.expires_at.astimezone(UTC)
    )
    if (
        open_grants
        and r.purpose == "treatment"
        and r.category in BREAK_GLASS_CATEGORIES
        and set(r.roles) & BREAK_GLASS_ROLES
    ):
        return Expected(True, BREAK_THE_GLASS, open_grants=open_grants)
    if denies:
        return Expected(False, CONSENT_DENIED, denies=denies)
    return Expected(False, NO_CONSENT)


def check_against_reference(world: World, decision_point: DecisionPoint, enforcer: object, r: AccessRequest) -> str:
    expected = reference(world, r)
    got = decision_point.decide(r)
    assert (got.allowed, got.basis) == (expected.allowed, expected.basis), (r, expected, got)
    if got.basis == CONSENT:
        assert got.consent_id in expected.permits, (r, expected, got)
    elif got.basis == CONSENT_DENIED:
        assert got.consent_id in expected.denies, (r, expected, got)
    elif got.basis == BREAK_THE_GLASS:
        assert got.break_glass_id in expected.open_grants, (r, expected, got)
    else:
        assert got.consent_id is None and got.break_glass_id is None, (r, got)
    if expected.basis not in (OWN_TENANT, ROLE):
        by_casbin = enforcer.enforce(  # type: ignore[attr-defined]
            str(r.person_id), str(r.tenant_id), r.category, r.purpose, stamp(r.at)
        )
        assert by_casbin == expected.by_consents, (r, expected, by_casbin)
    return got.basis


@pytest.mark.slow
def test_decisions_follow_the_rules_and_agree_with_casbin() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(world=worlds())
    def check(world: World) -> None:
        lines = compile_consents(world.consents, world.treating, world.network_default)
        decision_point = DecisionPoint.build(lines, world.grants)
        enforcer = casbin_enforcer(lines)
        for r in world.requests:
            seen[check_against_reference(world, decision_point, enforcer, r)] += 1

    check()
    # The generator must reach every outcome, or the comparison above proves little.
    assert set(seen) == {OWN_TENANT, ROLE, CONSENT, NETWORK_DEFAULT, BREAK_THE_GLASS, CONSENT_DENIED, NO_CONSENT}, seen


# Plain examples.

PERSON, HOSPITAL, CLINIC, DOCTOR = PERSONS[0], TENANTS[0], TENANTS[1], USERS[0]
T = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)


def permit(
    *, start: datetime = T - timedelta(days=30), end: datetime | None = None, category: str = "care_plan"
) -> ConsentTerms:
    return ConsentTerms(
        id=uuid.uuid4(),
        person_id=PERSON,
        decision="permit",
        grantee_kind="tenant",
        grantee_tenant_id=CLINIC,
        categories=(category,),
        purposes=("treatment",),
        period_start=start,
        period_end=end,
    )


def ask(at: datetime, *, category: str = "care_plan") -> AccessRequest:
    return AccessRequest(
        tenant_id=CLINIC,
        roles=("clinician",),
        person_id=PERSON,
        category=category,
        purpose="treatment",
        at=at,
        source_tenant_id=HOSPITAL,
        user_id=DOCTOR,
    )


def decide(consents: list[ConsentTerms], at: datetime, **kwargs: str) -> Decision:
    return DecisionPoint.build(compile_consents(consents, {}, "opt_in")).decide(ask(at, **kwargs))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        stamp(datetime(2024, 6, 1, 9, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_consents([permit(start=datetime(2024, 6, 1))], {}, "opt_in")
    with pytest.raises(ValueError, match="timezone-aware"):
        decide([permit()], datetime(2024, 6, 1, 9, 30))


def test_the_same_instant_in_two_time_zones_decides_the_same() -> None:
    # The consent ends at 10:00 UTC. 10:30 in Kolkata (05:00 UTC) is before it although its wall-clock text is
    # later; 06:00 in New York (10:00 UTC) is at the end although its text is earlier.
    consent = permit(end=datetime(2024, 6, 1, 10, 0, tzinfo=UTC))
    kolkata, new_york = timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-4))
    before = datetime(2024, 6, 1, 5, 0, tzinfo=UTC)
    assert decide([consent], before) == decide([consent], before.astimezone(kolkata))
    assert decide([consent], before.astimezone(kolkata)) == Decision(True, CONSENT, consent_id=consent.id)
    at_end = datetime(2024, 6, 1, 6, 0, tzinfo=new_york)
    assert decide([consent], at_end) == decide([consent], at_end.astimezone(UTC)) == Decision(False, NO_CONSENT)


def test_a_consent_ending_at_t_allows_just_before_and_denies_at_t() -> None:
    consent = permit(end=T)
    assert decide([consent], T - ONE_US) == Decision(True, CONSENT, consent_id=consent.id)
    assert decide([consent], T) == Decision(False, NO_CONSENT)
    # And its start is inclusive.
    assert decide([consent], consent.period_start) == Decision(True, CONSENT, consent_id=consent.id)
    assert decide([consent], consent.period_start - ONE_US) == Decision(False, NO_CONSENT)


def test_a_revoked_consent_allows_nothing() -> None:
    consent = permit()
    revoked = replace(consent, status="revoked")
    assert decide([consent], T) == Decision(True, CONSENT, consent_id=consent.id)
    assert decide([revoked], T) == Decision(False, NO_CONSENT)


def test_times_before_the_year_1000_keep_their_order() -> None:
    consent = permit(start=datetime(999, 1, 1, tzinfo=UTC))
    assert decide([consent], T) == Decision(True, CONSENT, consent_id=consent.id)


def test_break_the_glass_opens_only_treatment_reads_of_its_categories_for_clinicians() -> None:
    grant = Grant(uuid.uuid4(), PERSON, CLINIC, DOCTOR, T - timedelta(hours=1), T + timedelta(hours=3))
    point = DecisionPoint.build(compile_consents([], {}, "opt_in"), [grant])
    assert point.decide(ask(T)) == Decision(True, BREAK_THE_GLASS, break_glass_id=grant.id)
    assert point.decide(ask(T, category="messages")) == Decision(False, NO_CONSENT)
    assert point.decide(replace(ask(T), roles=("care_manager",))) == Decision(False, NO_CONSENT)
    assert point.decide(replace(ask(T), purpose="care_coordination")) == Decision(False, NO_CONSENT)
    assert point.decide(replace(ask(T), user_id=USERS[1])) == Decision(False, NO_CONSENT)
    assert point.decide(ask(grant.expires_at)) == Decision(False, NO_CONSENT)
