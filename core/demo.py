"""The demo network: two hospitals, a clinic, a social-service partner, users for each role, patients.

Synthetic data only: names are drawn from a fixed list with a fixed seed, so every seed is the same.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, demo_care
from core.consent import linking
from core.consent.models import Consent, PatientLink, PatientLinkKey
from core.db import utcnow
from core.messaging.blobs import BlobStore
from core.patients.models import Patient, PatientIdentifier
from tenants import passwords
from tenants.context import tenant_context
from tenants.models import Membership, Network, Tenant, User

DEMO_PASSWORD = "carehub-demo-2026"  # noqa: S105 - published demo login
NETWORK_ID_SYSTEM = "urn:carehub:network-id"

TENANTS = (
    ("st-marys", "St. Mary's Hospital", "hospital"),
    ("lakeside-general", "Lakeside General Hospital", "hospital"),
    ("riverside-clinic", "Riverside Family Clinic", "clinic"),
    ("harbor-community", "Harbor Community Services", "partner"),
)
USERS = (
    ("netadmin@carehub.example", "Nora Network", None, ()),
    ("admin@stmarys.example", "Sam Admin", "st-marys", ("tenant_admin",)),
    ("carol.manager@stmarys.example", "Carol Manager", "st-marys", ("care_manager",)),
    ("dr.lee@stmarys.example", "Dr. Min Lee", "st-marys", ("clinician",)),
    ("priya.privacy@stmarys.example", "Priya Shah", "st-marys", ("privacy_officer",)),
    ("admin@lakeside.example", "Luis Admin", "lakeside-general", ("tenant_admin",)),
    ("dr.patel@lakeside.example", "Dr. Asha Patel", "lakeside-general", ("clinician",)),
    ("admin@riverside.example", "Rita Admin", "riverside-clinic", ("tenant_admin",)),
    ("maria.cm@riverside.example", "Maria Gomez", "riverside-clinic", ("care_manager",)),
    ("nina.chw@riverside.example", "Nina Okafor", "riverside-clinic", ("chw",)),
    ("dr.nguyen@riverside.example", "Dr. Thu Nguyen", "riverside-clinic", ("clinician",)),
    ("admin@harbor.example", "Hal Admin", "harbor-community", ("tenant_admin",)),
    ("sam.partner@harbor.example", "Sam Rivera", "harbor-community", ("partner_staff",)),
)
GIVEN = (
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Elena",
    "Farah",
    "George",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Marco",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Tomas",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
)
FAMILY = (
    "Abbott",
    "Brennan",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Mensah",
    "Nguyen",
    "Olsen",
    "Petrov",
    "Quigley",
    "Rahman",
    "Silva",
    "Tanaka",
)
# Who enters each clinical tenant's care data, and the clinicians on its care teams.
CARE_DEMO = {
    "st-marys": ("carol.manager@stmarys.example", ("dr.lee@stmarys.example",)),
    "lakeside-general": ("admin@lakeside.example", ("dr.patel@lakeside.example",)),
    "riverside-clinic": ("maria.cm@riverside.example", ("dr.nguyen@riverside.example",)),
}
# The portal account of each clinical tenant's first patient.
PORTAL_USERS = {slug: f"patient@{slug}.example" for slug in CARE_DEMO}
# Every demo login: staff, then patients (portal).
ALL_USERS = USERS + tuple((email, "", slug, ("patient",)) for slug, email in PORTAL_USERS.items())
STREETS = ("Elm St", "Harbor Rd", "Maple Ave", "River Way", "Oak Ct", "Station Sq")
LANGUAGES = ("en", "en", "en", "es", "fr", "vi", "ar")


@dataclass(frozen=True)
class DemoLogin:
    email: str
    tenant: str | None
    roles: tuple[str, ...]


async def seed(db: async_sessionmaker[AsyncSession], blobs: BlobStore, patients_per_tenant: int = 9) -> list[DemoLogin]:
    """Create the demo network unless a network exists already. Returns the logins (empty if skipped)."""
    async with db() as session:
        if await session.scalar(select(Network.id).limit(1)) is not None:
            return []
    rng = random.Random(2026)  # noqa: S311 - synthetic demo data, not security
    now = utcnow()
    password_hash = passwords.hash_password(DEMO_PASSWORD)
    tenants: dict[str, Tenant] = {}
    async with db() as session, session.begin():
        network = Network(id=uuid.uuid4(), slug="riverside-network", name="Riverside Regional Health Network")
        session.add(network)
        for slug, name, kind in TENANTS:
            tenants[slug] = Tenant(
                id=uuid.uuid4(),
                network_id=network.id,
                slug=slug,
                name=name,
                kind=kind,
                status="active",
                created_at=now,
                activated_at=now,
            )
            session.add(tenants[slug])
        users = {}
        for email, full_name, _tenant, _roles in USERS:
            users[email] = User(
                id=uuid.uuid4(),
                email=email,
                full_name=full_name,
                password_hash=password_hash,
                network_role="network_admin" if _tenant is None else None,
            )
            session.add(users[email])
    shared_people = [
        (
            rng.choice(GIVEN),
            rng.choice(FAMILY),
            date(1940, 1, 1) + timedelta(days=rng.randint(0, 28000)),
            rng.choice(("female", "male")),
            f"NET-{1000 + i}",
        )
        for i in range(4)
    ]
    for index, (slug, tenant) in enumerate(tenants.items()):
        with tenant_context(tenant.id):
            async with db() as session, session.begin():
                for email, _name, tenant_slug, roles in USERS:
                    if tenant_slug == slug:
                        session.add(Membership(user_id=users[email].id, roles=list(roles)))
                people = list(shared_people[index % 2 :: 2]) + [
                    (
                        rng.choice(GIVEN),
                        rng.choice(FAMILY),
                        date(1935, 1, 1) + timedelta(days=rng.randint(0, 30000)),
                        rng.choice(("female", "male", "female", "male", "other")),
                        None,
                    )
                    for _ in range(patients_per_tenant)
                ]
                for number, (given, family, born, sex, network_id) in enumerate(people, start=1):
                    patient = Patient(
                        id=uuid.uuid4(),
                        mrn=f"{slug.replace('-', '')[:3].upper()}-{10000 + number}",
                        given_name=given,
                        family_name=family,
                        birth_date=born,
                        sex=sex,
                        phone=f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                        address={
                            "line": [f"{rng.randint(1, 999)} {rng.choice(STREETS)}"],
                            "city": "Riverside",
                            "state": "CA",
                            "postal_code": f"92{rng.randint(100, 999)}",
                            "country": "US",
                        },
                        language=rng.choice(LANGUAGES),
                    )
                    if network_id:
                        patient.identifiers = [PatientIdentifier(system=NETWORK_ID_SYSTEM, value=network_id)]
                    session.add(patient)
                    await linking.sync_patient(session, patient, audit.SYSTEM)
                audit.record(
                    session,
                    audit.SYSTEM,
                    action="demo.seed",
                    resource_type="Tenant",
                    resource_id=tenant.id,
                    detail={"patients": len(people)},
                )
    for slug, (actor, clinicians) in CARE_DEMO.items():
        await demo_care.seed_tenant(db, blobs, tenants[slug].id, actor, clinicians, password_hash, PORTAL_USERS[slug])
    await _seed_consent(db, tenants["st-marys"].id, tenants["riverside-clinic"].id, users["admin@stmarys.example"].id)
    return [DemoLogin(email, tenant, tuple(roles) or ("network_admin",)) for email, _n, tenant, roles in ALL_USERS]


async def _seed_consent(
    db: async_sessionmaker[AsyncSession], hospital: uuid.UUID, clinic: uuid.UUID, recorded_by: uuid.UUID
) -> None:
    """The first person known to both St. Mary's and Riverside Family Clinic (network id NET-1000) consented,
    on a scanned form at St. Mary's, to Riverside seeing their care plan, tasks and appointments and results
    for treatment and care coordination; Riverside is their primary care clinic."""
    async with db() as session, session.begin():
        links = {
            link.tenant_id: link
            for link in await session.scalars(
                select(PatientLink)
                .join(
                    PatientLinkKey,
                    (PatientLinkKey.tenant_id == PatientLink.tenant_id)
                    & (PatientLinkKey.patient_id == PatientLink.patient_id),
                )
                .where(PatientLinkKey.system == NETWORK_ID_SYSTEM, PatientLinkKey.value == "NET-1000")
            )
        }
        if hospital not in links or clinic not in links:
            return
        links[clinic].primary_care = True
        session.add(
            Consent(
                person_id=links[hospital].person_id,
                decision="permit",
                grantee_kind="tenant",
                grantee_tenant_id=clinic,
                categories=["care_plan", "tasks_appointments", "clinical_results"],
                purposes=["treatment", "care_coordination"],
                period_start=utcnow() - timedelta(days=30),
                period_end=None,
                status="active",
                source_kind="scanned_form",
                source_reference="demo://consent-forms/NET-1000.pdf",
                recorded_tenant_id=hospital,
                recorded_patient_id=links[hospital].patient_id,
                recorded_by=recorded_by,
            )
        )
