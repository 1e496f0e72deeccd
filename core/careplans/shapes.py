"""A care plan's output shape and record descriptor, shared by the plan, template and version operations."""

from __future__ import annotations

from core.careplans.models import CarePlan, CarePlanActivity, CarePlanGoal
from core.careplans.schemas import ActivityOut, CarePlanOut, GoalOut
from core.records import Records

RESOURCE = "CarePlan"


def to_out(plan: CarePlan) -> CarePlanOut:
    return CarePlanOut(
        id=plan.id,
        patient_id=plan.patient_id,
        template_id=plan.template_id,
        title=plan.title,
        description=plan.description,
        status=plan.status,
        period_start=plan.period_start,
        period_end=plan.period_end,
        structured=plan.structured,
        staff_note=plan.staff_note,
        version=plan.version,
        author_id=plan.author_id,
        goals=[goal_out(g) for g in plan.goals],
        activities=[activity_out(a) for a in plan.activities],
        created_at=plan.created_at,
        updated_at=plan.updated_at,
        data_category=plan.data_category,
    )


CARE_PLANS = Records(
    model=CarePlan, resource_type=RESOURCE, permission="careplans", not_found="care plan not found", shape=to_out
)


def goal_out(goal: CarePlanGoal) -> GoalOut:
    return GoalOut(
        id=goal.id,
        description=goal.description,
        measure=goal.measure,
        target_value=goal.target_value,
        due_date=goal.due_date,
        lifecycle_status=goal.lifecycle_status,
        achievement_status=goal.achievement_status,
    )


def activity_out(activity: CarePlanActivity) -> ActivityOut:
    return ActivityOut(
        id=activity.id,
        kind=activity.kind,
        description=activity.description,
        status=activity.status,
        task_id=activity.task_id,
        appointment_id=activity.appointment_id,
    )
