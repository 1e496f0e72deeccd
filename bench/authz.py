"""Cost of one role decision: Casbin's enforce (RBAC with domains), and the decision the API makes per request
(Authorizer.decide: Casbin's answer, kept per role set and domain)."""

from __future__ import annotations

import platform
import time
import uuid

from core.authz import DEFAULT_POLICIES, Authorizer


def main(users: int = 10_000, checks: int = 200_000) -> None:
    authorizer = Authorizer([("p", *rule) for rule in DEFAULT_POLICIES])
    tenants = [str(uuid.uuid4()) for _ in range(50)]
    roles = ["tenant_admin", "care_manager", "clinician", "chw", "partner_staff"]
    subjects = []
    for n in range(users):
        user, tenant = str(uuid.uuid4()), tenants[n % len(tenants)]
        authorizer.sync_roles(user, tenant, [roles[n % len(roles)]])
        subjects.append((user, tenant))
    start = time.perf_counter()
    for n in range(checks):
        user, tenant = subjects[n % users]
        authorizer.allows(user, tenant, "patients", "read")
    allows_us = (time.perf_counter() - start) / checks * 1e6
    start = time.perf_counter()
    for n in range(checks // 10):
        user, tenant = subjects[n % users]
        authorizer.sync_roles(user, tenant, [roles[n % len(roles)]])
    sync_us = (time.perf_counter() - start) / (checks // 10) * 1e6
    start = time.perf_counter()
    for n in range(checks):
        _, tenant = subjects[n % users]
        authorizer.decide((roles[n % len(roles)],), tenant, "patients", "read")
    decide_us = (time.perf_counter() - start) / checks * 1e6
    print(
        f"python {platform.python_version()} on {platform.machine()}; {users} users in {len(tenants)} tenants, "
        f"{len(DEFAULT_POLICIES)} permission rules"
    )
    print(f"role check (enforce):         {allows_us:7.1f} us")
    print(f"role sync (unchanged roles):  {sync_us:7.1f} us")
    print(f"role decision per request (decide, kept per role set): {decide_us:7.2f} us")


if __name__ == "__main__":
    main()
