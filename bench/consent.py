"""Cost of the consent decision point, as every cross-tenant read asks it, against Casbin's own enforcer.

    python -m bench.consent [--people 10000] [--consents 50000] [--checks 200000] [--casbin-all 20]

A seeded random network: 50 tenants, each person treated by 1-3 of them, consents of every grantee kind over
random categories, purposes and periods (some open-ended, some revoked). The decision point is built once over
all the lines; decide() is timed per call (perf_counter_ns around each call, for p50/p99) and in one loop (for
the mean, without the timer's own cost). Casbin's enforcer is timed over one person's lines (the size a request
loads) and, for a few checks, over all the lines. "Per-request build" is what :func:`core.consent.decision.load`
does after its queries: compile one person's consents and index them.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from core.consent.categories import CATEGORIES, PURPOSES, ROLE_PURPOSES
from core.consent.decision import (
    AccessRequest,
    ConsentTerms,
    DecisionPoint,
    casbin_enforcer,
    compile_consents,
    stamp,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
ROLES = sorted({role for roles in ROLE_PURPOSES.values() for role in roles})


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def network(
    people: int, consents: int, seed: int = 4
) -> tuple[list[uuid.UUID], list[uuid.UUID], list[ConsentTerms], dict[uuid.UUID, set[uuid.UUID]]]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    tenants = [_uuid(rng) for _ in range(50)]
    persons = [_uuid(rng) for _ in range(people)]
    treating = {p: set(rng.sample(tenants, rng.randint(1, 3))) for p in persons}
    terms = []
    for _ in range(consents):
        person = rng.choice(persons)
        kind = rng.choice(("tenant", "tenant", "treating", "network"))
        start = NOW + timedelta(days=rng.randint(-720, 30))
        end = None if rng.random() < 0.3 else start + timedelta(days=rng.randint(1, 900))
        terms.append(
            ConsentTerms(
                id=_uuid(rng),
                person_id=person,
                decision="deny" if rng.random() < 0.15 else "permit",
                grantee_kind=kind,
                grantee_tenant_id=rng.choice(tenants) if kind == "tenant" else None,
                categories=tuple(rng.sample(CATEGORIES, rng.randint(1, 4))),
                purposes=tuple(rng.sample(PURPOSES, rng.randint(1, 2))),
                period_start=start,
                period_end=end,
                status="revoked" if rng.random() < 0.1 else "active",
            )
        )
    return tenants, persons, terms, treating


def requests(n: int, tenants: list[uuid.UUID], persons: list[uuid.UUID], seed: int = 5) -> list[AccessRequest]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    out = []
    for _ in range(n):
        purpose = rng.choice(PURPOSES)
        tenant, source = rng.sample(tenants, 2)
        out.append(
            AccessRequest(
                tenant_id=tenant,
                roles=(rng.choice(sorted(ROLE_PURPOSES[purpose])),),
                person_id=rng.choice(persons),
                category=rng.choice(CATEGORIES),
                purpose=purpose,
                at=NOW + timedelta(seconds=rng.randint(-86_400 * 400, 86_400 * 400)),
                source_tenant_id=source,
                user_id=_uuid(rng),
            )
        )
    return out


def _us(ns: float) -> str:
    return f"{ns / 1000:10.1f}"


def _row(label: str, mean_ns: float, p50_ns: float | None = None, p99_ns: float | None = None) -> None:
    p50 = _us(p50_ns) if p50_ns is not None else f"{'':>10}"
    p99 = _us(p99_ns) if p99_ns is not None else f"{'':>10}"
    print(f"{label:<46}{_us(mean_ns)}{p50}{p99}")


def _percentiles(samples: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--consents", type=int, default=50_000)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--casbin-people", type=int, default=200, help="people for Casbin over one person's lines")
    parser.add_argument("--casbin-all", type=int, default=20, help="checks for Casbin over all lines")
    parser.add_argument(
        "--casbin-all-max-lines", type=int, default=25_000, help="skip Casbin over all lines above this many lines"
    )
    args = parser.parse_args()

    tenants, persons, terms, treating = network(args.people, args.consents)
    asks = requests(args.checks, tenants, persons)

    began = time.perf_counter_ns()
    lines = compile_consents(terms, treating, "opt_out")
    compiled = time.perf_counter_ns()
    point = DecisionPoint.build(lines)
    built = time.perf_counter_ns()

    allowed = 0
    loop_start = time.perf_counter_ns()
    for ask in asks:
        allowed += point.decide(ask).allowed
    mean_ns = (time.perf_counter_ns() - loop_start) / len(asks)
    samples = []
    clock = time.perf_counter_ns
    for ask in asks:
        t0 = clock()
        point.decide(ask)
        samples.append(clock() - t0)
    p50, p99 = _percentiles(samples)

    # Per-request build, as load() does after its queries: one person's consents, compiled and indexed.
    by_person: dict[uuid.UUID, list[ConsentTerms]] = defaultdict(list)
    for consent in terms:
        by_person[consent.person_id].append(consent)
    sample_people = persons[: min(len(persons), 5_000)]
    build_samples = []
    per_person_lines = []
    for person in sample_people:
        t0 = clock()
        own = compile_consents(by_person[person], {person: treating[person]}, "opt_out")
        DecisionPoint.build(own)
        build_samples.append(clock() - t0)
        per_person_lines.append(len(own))
    b50, b99 = _percentiles(build_samples)

    # Casbin over one person's lines: an enforcer per person (its construction timed too), then that person's checks.
    person_asks: dict[uuid.UUID, list[AccessRequest]] = defaultdict(list)
    for ask in asks:
        person_asks[ask.person_id].append(ask)
    enforcer_ns, enforce_samples, disagreements = [], [], 0
    for person in [p for p in persons if person_asks[p]][: args.casbin_people]:
        own = compile_consents(by_person[person], {person: treating[person]}, "opt_out")
        t0 = clock()
        enforcer = casbin_enforcer(own)
        enforcer_ns.append(clock() - t0)
        for ask in person_asks[person]:
            at = stamp(ask.at)
            t0 = clock()
            verdict = enforcer.enforce(str(ask.person_id), str(ask.tenant_id), ask.category, ask.purpose, at)  # type: ignore[attr-defined]
            enforce_samples.append(clock() - t0)
            decided = point.decide(ask)
            disagreements += verdict != (decided.allowed and decided.basis != "break_the_glass")
    c50, c99 = _percentiles(enforce_samples)

    # Casbin over every line: slow, so only a few checks. Loading is quadratic in the lines (each added policy is
    # first looked for in a list), so --casbin-all 0 skips this part for large networks.
    all_build_ns, all_samples = 0, []
    if args.casbin_all and len(lines) <= args.casbin_all_max_lines:
        t0 = clock()
        everything = casbin_enforcer(lines)
        all_build_ns = clock() - t0
        for ask in asks[: args.casbin_all]:
            at = stamp(ask.at)
            t0 = clock()
            everything.enforce(str(ask.person_id), str(ask.tenant_id), ask.category, ask.purpose, at)  # type: ignore[attr-defined]
            all_samples.append(clock() - t0)

    print(
        f"python {platform.python_version()} on {platform.machine()}; {len(persons)} people, {len(terms)} consents, "
        f"{len(tenants)} tenants, network default opt_out"
    )
    print(
        f"policy lines: {len(lines)}; compile {(compiled - began) / 1e6:.0f} ms, "
        f"build {(built - compiled) / 1e6:.0f} ms"
    )
    print(f"{len(asks)} checks, {allowed / len(asks):.0%} allowed")
    print(f"{'':<46}{'mean us':>10}{'p50 us':>10}{'p99 us':>10}")
    _row("decide(), all lines indexed", mean_ns, p50, p99)
    _row(
        f"per-request build (1 person, ~{statistics.mean(per_person_lines):.0f} lines)",
        statistics.mean(build_samples),
        b50,
        b99,
    )
    _row(f"casbin enforcer build, 1 person ({len(enforcer_ns)})", statistics.mean(enforcer_ns))
    _row(f"casbin enforce, 1 person's lines ({len(enforce_samples)})", statistics.mean(enforce_samples), c50, c99)
    if all_samples:
        _row("casbin enforcer build, all lines", all_build_ns)
        _row(f"casbin enforce, all lines ({len(all_samples)})", statistics.mean(all_samples))
    elif args.casbin_all:
        print(f"{'casbin over all lines':<46}skipped: {len(lines)} lines > --casbin-all-max-lines (quadratic load)")
    print(f"casbin and decide() disagreed on {disagreements} of {len(enforce_samples)} checks")


if __name__ == "__main__":
    main()
