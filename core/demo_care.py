"""Care coordination demo data: care teams, plans from the standard templates, tasks, appointments.

Written through the same services the API uses (so everything is validated, versioned and audited as
if staff had entered it), acting as each tenant's care manager or administrator.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.appointments import service as appointments
from core.appointments.schemas import AppointmentCreate, StatusChange
from core.authz import DEFAULT_POLICIES, Authorizer
from core.careplans import service as careplans
from core.careplans import templates as careplan_templates
from core.careplans.schemas import CarePlanCreate, CarePlanUpdate, GoalUpdate
from core.careteams import service as careteams
from core.careteams.schemas import CareTeamCreate, MemberIn
from core.db import utcnow
from core.messaging import service as messaging
from core.messaging.blobs import BlobStore
from core.messaging.schemas import MessageCreate, ThreadCreate
from core.patients.models import Patient
from core.principal import Principal
from core.results import service as results
from core.results.schemas import EducationCreate, ResultCreate
from core.tasks import service as tasks
from core.tasks.schemas import CommentIn, Escalation, TaskCreate, Transition
from tenants.context import tenant_context
from tenants.models import Membership, User


def _principal(user: User, tenant_id: uuid.UUID, roles: Sequence[str], authorizer: Authorizer) -> Principal:
    return Principal(
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        tenant_id=tenant_id,
        roles=tuple(roles),
        authorizer=authorizer,
        tenant_status="active",
    )


def _diabetes(today: date) -> dict[str, Any]:
    return {
        "hba1c_target_percent": 7.0,
        "last_hba1c_percent": 8.4,
        "monitoring": {"glucose_checks_per_day": 2, "uses_cgm": False},
        "medications": [
            {"name": "metformin", "dose": "1000 mg twice daily"},
            {"name": "empagliflozin", "dose": "10 mg once daily"},
        ],
        "screening": {
            "retinal_exam_due": (today + timedelta(days=40)).isoformat(),
            "foot_exam_due": (today + timedelta(days=12)).isoformat(),
        },
    }


def _heart_failure(today: date) -> dict[str, Any]:
    return {
        "discharge_date": (today - timedelta(days=2)).isoformat(),
        "dry_weight_kg": 82.5,
        "weight_gain_alert_kg": 2,
        "ejection_fraction_percent": 35,
        "nyha_class": "II",
        "fluid_limit_ml": 1500,
        "sodium_limit_mg": 2000,
    }


async def seed_tenant(
    db: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    actor_email: str,
    clinician_emails: Sequence[str],
    password_hash: str,
    portal_email: str,
) -> None:
    """Give the first patients of a clinical tenant a realistic picture of ongoing care, and the first patient
    a portal account (``portal_email``)."""
    authorizer = Authorizer([("p", *rule) for rule in DEFAULT_POLICIES])
    now = utcnow()
    today = now.date()
    with tenant_context(tenant_id):
        async with db() as session, session.begin():
            rows = (
                await session.execute(
                    select(User, Membership).join(Membership, Membership.user_id == User.id).order_by(User.email)
                )
            ).all()
            staff = {user.email: (user, membership) for user, membership in rows}
            actor_user, actor_membership = staff[actor_email]
            me = _principal(actor_user, tenant_id, actor_membership.roles, authorizer)
            clinicians = [staff[e][0] for e in clinician_emails if e in staff] or [actor_user]
            patients = list((await session.scalars(select(Patient).order_by(Patient.mrn))).all())
            templates = {t.code: t.id for t in await careplan_templates.install_standard(session, me)}

            for index, patient in enumerate(patients[:6]):
                await _results_and_messages(session, me, blobs, patient, index, clinicians[index % len(clinicians)])
                clinician = clinicians[index % len(clinicians)]
                members = [
                    MemberIn(role="care_manager", user_id=actor_user.id, is_lead=True),
                    MemberIn(role="primary_care", user_id=clinician.id) if clinician.id != actor_user.id else None,
                    MemberIn(
                        role="specialist",
                        name=["Dr. Rosa Diaz", "Dr. Kwame Boateng", "Dr. Ines Moreau"][index % 3],
                        organisation=["Riverside Cardiology", "Valley Endocrine Associates", "Bayview Pulmonary"][
                            index % 3
                        ],
                        phone="+1-555-010-0199",
                    ),
                ]
                await careteams.create(
                    session, me, patient.id, CareTeamCreate(members=[m for m in members if m is not None])
                )
                scenario = index % 3
                if scenario == 0:  # type 2 diabetes, active plan, routine follow-up
                    plan = await careplans.create(
                        session,
                        me,
                        CarePlanCreate(
                            patient_id=patient.id,
                            template_id=templates["diabetes-t2"],
                            status="active",
                            period_start=today - timedelta(days=30),
                            period_end=today + timedelta(days=335),
                            structured=_diabetes(today),
                            staff_note="Prefers calls after 5 pm; daughter helps with medications.",
                        ),
                    )
                    await careplans.update_goal(
                        session, me, plan.id, plan.goals[0].id, GoalUpdate(achievement_status="improving")
                    )
                    await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id,
                            title="Order HbA1c",
                            care_plan_id=plan.id,
                            assignee_id=clinician.id,
                            due_at=now + timedelta(days=5),
                        ),
                    )
                    overdue = await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id,
                            template_code="social-needs-screening",
                            due_at=now - timedelta(days=2),
                        ),
                    )
                    await tasks.add_comment(
                        session, me, overdue.id, CommentIn(body="Left a voicemail; will try again tomorrow.")
                    )
                    await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id,
                            title="Check your blood sugar before breakfast every day",
                            description="Write the number in your log book and bring it to your next visit.",
                            for_patient=True,
                            due_at=now + timedelta(days=14),
                        ),
                    )
                    await appointments.create(
                        session,
                        me,
                        AppointmentCreate(
                            patient_id=patient.id,
                            participant_id=clinician.id,
                            kind="video",
                            start_at=now + timedelta(days=3, hours=2),
                            end_at=now + timedelta(days=3, hours=2, minutes=20),
                            video_link="https://visits.carehub.example/room/diabetes-review",
                            reason="Diabetes review: glucose log and medications",
                        ),
                    )
                elif scenario == 1:  # heart failure, discharged two days ago
                    plan = await careplans.create(
                        session,
                        me,
                        CarePlanCreate(
                            patient_id=patient.id,
                            template_id=templates["heart-failure-discharge"],
                            status="active",
                            period_start=today - timedelta(days=2),
                            period_end=today + timedelta(days=28),
                            structured=_heart_failure(today),
                        ),
                    )
                    call = await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id,
                            template_code="post-discharge-call",
                            care_plan_id=plan.id,
                            assignee_id=clinician.id,
                            due_at=now - timedelta(hours=3),
                        ),
                    )
                    await tasks.transition(session, me, call.id, Transition(status="accepted"))
                    await tasks.escalate(
                        session, me, call.id, Escalation(reason="Call window passed; no answer on two attempts")
                    )
                    medrec = await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id, template_code="medication-reconciliation", care_plan_id=plan.id
                        ),
                    )
                    await tasks.transition(session, me, medrec.id, Transition(status="accepted"))
                    await tasks.transition(session, me, medrec.id, Transition(status="in_progress"))
                    await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id, template_code="follow-up-appointment-7d", care_plan_id=plan.id
                        ),
                    )
                    await appointments.create(
                        session,
                        me,
                        AppointmentCreate(
                            patient_id=patient.id,
                            participant_id=clinician.id,
                            kind="in_person",
                            start_at=now + timedelta(days=4),
                            end_at=now + timedelta(days=4, minutes=30),
                            location="Heart failure clinic, 2nd floor, room 214",
                            reason="Post-discharge visit: weight, fluid status, medication titration",
                        ),
                    )
                    await tasks.create(
                        session,
                        me,
                        TaskCreate(
                            patient_id=patient.id,
                            title="Weigh yourself every morning",
                            description="Call us if you gain more than 2 kg in 3 days.",
                            for_patient=True,
                        ),
                    )
                else:  # COPD, a draft plan and a missed appointment
                    plan = await careplans.create(
                        session,
                        me,
                        CarePlanCreate(
                            patient_id=patient.id,
                            template_id=templates["copd"],
                            period_start=today,
                            structured={
                                "gold_group": "E",
                                "fev1_percent_predicted": 48,
                                "exacerbations_last_year": 2,
                                "action_plan_given": False,
                                "smoking_status": "former",
                            },
                        ),
                    )
                    await careplans.update(
                        session,
                        me,
                        plan.id,
                        CarePlanUpdate(description="Draft for review with the pulmonologist on Thursday."),
                    )
                    missed = await appointments.create(
                        session,
                        me,
                        AppointmentCreate(
                            patient_id=patient.id,
                            participant_id=clinician.id,
                            kind="phone",
                            start_at=now - timedelta(hours=2),
                            end_at=now - timedelta(hours=1, minutes=45),
                            reason="Inhaler technique check",
                        ),
                    )
                    await appointments.change_status(session, me, missed.id, StatusChange(status="noshow"))
                    done = await tasks.create(
                        session,
                        me,
                        TaskCreate(patient_id=patient.id, title="Confirm vaccination status", assignee_id=clinician.id),
                    )
                    for status in ("accepted", "in_progress", "completed"):
                        await tasks.transition(session, me, done.id, Transition(status=status))

            # The first patient uses the portal.
            first = patients[0]
            account = User(
                id=uuid.uuid4(),
                email=portal_email,
                full_name=f"{first.given_name} {first.family_name}",
                password_hash=password_hash,
            )
            session.add(account)
            await session.flush()
            session.add(Membership(user_id=account.id, roles=["patient"], patient_id=first.id))


async def _results_and_messages(
    session: AsyncSession, me: Principal, blobs: BlobStore, patient: Patient, index: int, clinician: User
) -> None:
    """Lab results (one critical, unacknowledged), an education item, a staff thread and one with the patient."""
    now = utcnow()
    a1c = ["8.4", "7.2", "9.6"][index % 3]
    await results.create_result(
        session,
        me,
        patient.id,
        ResultCreate(
            code="4548-4",
            display="Hemoglobin A1c/Hemoglobin.total in Blood",
            value=a1c,
            unit="%",
            reference_range="4.0-5.6",
            interpretation="abnormal",
            status="final",
            effective_at=now - timedelta(days=10 + index),
            released_to_patient=True,
            ordered_by=clinician.id,
        ),
    )
    if index % 3 == 1:
        await results.create_result(
            session,
            me,
            patient.id,
            ResultCreate(
                code="2823-3",
                display="Potassium [Moles/volume] in Serum or Plasma",
                value="6.4",
                unit="mmol/L",
                reference_range="3.5-5.1",
                interpretation="critical",
                status="final",
                effective_at=now - timedelta(hours=1),
                ordered_by=clinician.id,
            ),
        )
    await results.assign_education(
        session,
        me,
        patient.id,
        EducationCreate(
            title=["Eating well with diabetes", "Heart failure: your daily weight", "Using your inhaler"][index % 3],
            url=[
                "https://medlineplus.gov/diabeticdiet.html",
                "https://medlineplus.gov/heartfailure.html",
                "https://medlineplus.gov/copd.html",
            ][index % 3],
        ),
    )
    await messaging.create_thread(
        session,
        me,
        ThreadCreate(
            patient_id=patient.id,
            subject="Care coordination notes",
            body="Patient asked about transport to the next visit; checking with Harbor Community Services.",
            participant_user_ids=[clinician.id] if clinician.id != me.user_id else [],
        ),
        blobs,
    )
    with_patient = await messaging.create_thread(
        session,
        me,
        ThreadCreate(
            patient_id=patient.id,
            subject="Your next visit",
            body="Hello! Your care team here. Please bring your medication list and glucose log to your next visit.",
            include_patient=True,
        ),
        blobs,
    )
    await messaging.send_message(
        session,
        me,
        with_patient.id,
        MessageCreate(body="We also sent you a short reading about your condition in the portal."),
        blobs,
    )
