"""The role decision point: answers from the Casbin policy, kept per role set, without mutating the enforcer."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from core.authz import DEFAULT_POLICIES, Authorizer
from core.principal import Principal

RULES = [("p", *rule) for rule in DEFAULT_POLICIES]
ROLES = sorted({rule[0] for rule in DEFAULT_POLICIES} | {"patient", "no_such_role"})
OBJECTS = sorted({rule[2] for rule in DEFAULT_POLICIES} | {"nothing"})
ACTIONS = ["read", "write", "delete", "*"]
DOMAINS = ["network", str(uuid.uuid4()), str(uuid.uuid4())]


def test_every_single_and_paired_role_set_decides_as_casbin_does_for_a_user() -> None:
    authorizer = Authorizer(RULES)
    role_sets = [(r,) for r in ROLES] + list(itertools.combinations(ROLES, 2))
    for roles, domain in itertools.product(role_sets, DOMAINS):
        user = str(uuid.uuid4())
        authorizer.sync_roles(user, domain, roles)
        for obj, act in itertools.product(OBJECTS, ACTIONS):
            assert authorizer.decide(roles, domain, obj, act) == authorizer.allows(user, domain, obj, act), (
                roles,
                domain,
                obj,
                act,
            )


@settings(max_examples=200, deadline=None)
@given(
    roles=st.sets(st.sampled_from(ROLES), min_size=1, max_size=4),
    domain=st.sampled_from(DOMAINS),
    obj=st.sampled_from(OBJECTS),
    act=st.sampled_from(ACTIONS),
)
def test_larger_role_sets_decide_as_casbin_does(roles: set[str], domain: str, obj: str, act: str) -> None:
    authorizer = Authorizer(RULES)
    user = str(uuid.uuid4())
    authorizer.sync_roles(user, domain, roles)
    assert authorizer.decide(roles, domain, obj, act) == authorizer.allows(user, domain, obj, act)


def test_a_tenant_rule_binds_only_its_own_domain() -> None:
    tenant, other = DOMAINS[1], DOMAINS[2]
    authorizer = Authorizer([*RULES, ("p", "chw", tenant, "careplans", "write")])
    assert authorizer.decide(["chw"], tenant, "careplans", "write")
    assert not authorizer.decide(["chw"], other, "careplans", "write")


def test_requests_of_many_users_leave_the_enforcer_unchanged() -> None:
    """Decisions depend on the role set only: a thousand callers with the same roles add no role assignment."""
    authorizer = Authorizer(RULES)
    tenant = uuid.uuid4()

    def principal() -> Principal:
        user = uuid.uuid4()
        return Principal(user, "x@test.example", "X", tenant, ("clinician",), authorizer, "active")

    assert principal().can("patients", "read")
    grouping = list(authorizer._enforcer.get_grouping_policy())
    for _ in range(1000):
        caller = principal()
        assert caller.can("patients", "read") and caller.can("tasks", "write") and not caller.can("users", "write")
    assert list(authorizer._enforcer.get_grouping_policy()) == grouping


def test_a_role_change_decides_on_the_new_roles_at_once() -> None:
    authorizer = Authorizer(RULES)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    as_admin = Principal(user, "x@test.example", "X", tenant, ("tenant_admin",), authorizer, "active")
    as_chw = Principal(user, "x@test.example", "X", tenant, ("chw",), authorizer, "active")
    assert as_admin.can("users", "write")
    assert not as_chw.can("users", "write")
    assert as_admin.can("users", "write")
