"""Demographic matching: which persons of other tenants' records may be a record's person, and how alike they are.

Names are compared with Jaro-Winkler (typos and given/family order forgiven), then birth date, sex and postal code;
only records found by blocking keys are compared, never the whole network.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date

import jellyfish
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.consent.link_schemas import Agreement, FieldAgreement, LinkSuggestion
from core.consent.models import LinkExclusion, PatientLink, Person

# A candidate is suggested when its score reaches THRESHOLD and its names are at least NAME_FLOOR alike: a
# matching birth date, sex and postal code alone describe many people.
THRESHOLD = 0.8
NAME_FLOOR = 0.85
# Weights of the fields in the score (they add up to 1); a partial birth date (day and month swapped, one digit
# off) counts PARTIAL_BIRTH_DATE of its weight, a postal code missing on one side half of its weight.
WEIGHTS = {"name": 0.45, "birth_date": 0.30, "sex": 0.10, "postal_code": 0.15}
PARTIAL_BIRTH_DATE = 0.6
# At most this many candidate records are compared for one suggestion request (the blocking keeps it small).
BLOCK_LIMIT = 1000
MAX_SUGGESTIONS = 10
_NOT_LETTERS = re.compile(r"[^\w ]+")


def _plain(key: str) -> str:
    """A name key without punctuation (O'Brien, Smith-Jones compare as obrien, smithjones)."""
    return " ".join(_NOT_LETTERS.sub("", key).split())


def _part_similarity(a: str, b: str) -> float:
    """How alike two name parts are: Jaro-Winkler, raised to 0.9 when they sound alike (metaphone)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    score = jellyfish.jaro_winkler_similarity(a, b)
    if jellyfish.metaphone(a) == jellyfish.metaphone(b):
        score = max(score, 0.9)
    return score


def name_similarity(given: str, family: str, other_given: str, other_family: str) -> float:
    """How alike two names are (0..1): the better of the straight and the swapped given/family comparison."""
    g, f, og, of = (_plain(k) for k in (given, family, other_given, other_family))
    straight = (_part_similarity(g, og) + _part_similarity(f, of)) / 2
    swapped = (_part_similarity(g, of) + _part_similarity(f, og)) / 2
    return max(straight, swapped)


def _valid_date(year: int, month: int, day: int) -> date | None:
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    return found if 1880 <= found.year and found <= date.today() else None


def birth_date_variants(value: date) -> set[date]:
    """The near misses of a birth date a typist makes: day and month swapped, or one digit of YYYYMMDD wrong."""
    variants: set[date] = set()
    swapped = _valid_date(value.year, value.day, value.month)
    if swapped is not None:
        variants.add(swapped)
    digits = value.strftime("%Y%m%d")
    for position in range(len(digits)):
        for digit in "0123456789":
            if digit == digits[position]:
                continue
            text = digits[:position] + digit + digits[position + 1 :]
            found = _valid_date(int(text[:4]), int(text[4:6]), int(text[6:]))
            if found is not None:
                variants.add(found)
    variants.discard(value)
    return variants


@dataclass(frozen=True)
class Keys:
    """The demographic keys of one record, as compared."""

    given: str
    family: str
    birth_date: date
    sex: str
    postal_code: str | None

    @classmethod
    def of(cls, link: PatientLink) -> Keys:
        return cls(link.given_key, link.family_key, link.birth_date, link.sex, link.postal_code)


def compare(mine: Keys, theirs: Keys) -> tuple[float, FieldAgreement]:
    """The match score (0..1) of two records and which fields agree; 0 when the names are not alike."""
    names = name_similarity(mine.given, mine.family, theirs.given, theirs.family)
    name: Agreement = "same" if names == 1.0 else "similar" if names >= NAME_FLOOR else "different"
    birth: Agreement
    if mine.birth_date == theirs.birth_date:
        birth, birth_score = "same", 1.0
    elif theirs.birth_date in birth_date_variants(mine.birth_date):
        birth, birth_score = "similar", PARTIAL_BIRTH_DATE
    else:
        birth, birth_score = "different", 0.0
    sex: Agreement
    if "unknown" in (mine.sex, theirs.sex):
        sex, sex_score = "unknown", 0.5
    else:
        sex, sex_score = ("same", 1.0) if mine.sex == theirs.sex else ("different", 0.0)
    postal: Agreement
    if not mine.postal_code or not theirs.postal_code:
        postal, postal_score = "unknown", 0.5
    else:
        postal, postal_score = ("same", 1.0) if mine.postal_code == theirs.postal_code else ("different", 0.0)
    agreement = FieldAgreement(name=name, birth_date=birth, sex=sex, postal_code=postal)
    if names < NAME_FLOOR:
        return 0.0, agreement
    score = (
        WEIGHTS["name"] * names
        + WEIGHTS["birth_date"] * birth_score
        + WEIGHTS["sex"] * sex_score
        + WEIGHTS["postal_code"] * postal_score
    )
    return round(score, 3), agreement


async def network_id_of(session: AsyncSession, link: PatientLink) -> uuid.UUID | None:
    return await session.scalar(select(Person.network_id).where(Person.id == link.person_id))


async def suggestions_for(session: AsyncSession, link: PatientLink) -> list[LinkSuggestion]:
    """The persons of other tenants' records that may be this record's person, best first.

    Only records found by the blocking keys are compared (the same birth date or one of its near misses, or the
    same given or family name in either order), never the whole network. A person already holding a record of
    this tenant (this record's own person included) or excluded by an administrator's unlink is not suggested.
    """
    network_id = await network_id_of(session, link)
    own_tenant = aliased(PatientLink)
    dates = {link.birth_date, *birth_date_variants(link.birth_date)}
    names = {k for k in (link.given_key, link.family_key) if k}
    blocks = [PatientLink.birth_date.in_(sorted(dates))]
    if names:
        blocks += [PatientLink.family_key.in_(sorted(names)), PatientLink.given_key.in_(sorted(names))]
    excluded = select(LinkExclusion.person_id).where(
        LinkExclusion.tenant_id == link.tenant_id, LinkExclusion.patient_id == link.patient_id
    )
    rows = await session.scalars(
        select(PatientLink)
        .join(Person, Person.id == PatientLink.person_id)
        .where(
            Person.network_id == network_id,
            PatientLink.tenant_id != link.tenant_id,
            PatientLink.person_id.not_in(select(own_tenant.person_id).where(own_tenant.tenant_id == link.tenant_id)),
            PatientLink.person_id.not_in(excluded),
            or_(*blocks),
        )
        .limit(BLOCK_LIMIT)
    )
    mine = Keys.of(link)
    best: dict[uuid.UUID, tuple[float, FieldAgreement]] = {}
    for candidate in rows:
        score, agreement = compare(mine, Keys.of(candidate))
        if score >= THRESHOLD and score > best.get(candidate.person_id, (0.0, agreement))[0]:
            best[candidate.person_id] = (score, agreement)
    if not best:
        return []
    counts: dict[uuid.UUID, int] = {}
    for person_id, count in await session.execute(
        select(PatientLink.person_id, func.count())
        .where(PatientLink.person_id.in_(list(best)))
        .group_by(PatientLink.person_id)
    ):
        counts[person_id] = int(count)
    found = [
        LinkSuggestion(id=person_id, score=score, agreement=agreement, records=counts.get(person_id, 0))
        for person_id, (score, agreement) in best.items()
    ]
    found.sort(key=lambda s: (-s.score, str(s.id)))
    return found[:MAX_SUGGESTIONS]
