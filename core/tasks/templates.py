"""Standard follow-up tasks every tenant gets (transitions of care and chronic care basics)."""

from __future__ import annotations

from core.tasks.schemas import TaskTemplate

STANDARD: tuple[TaskTemplate, ...] = (
    TaskTemplate(
        code="post-discharge-call",
        title="Post-discharge follow-up call",
        description=(
            "Call the patient within 48 hours of discharge: check symptoms and understanding of the discharge "
            "instructions, confirm medications were picked up, confirm the follow-up appointment, and ask about "
            "transport and support at home."
        ),
        priority="urgent",
        due_in_hours=48,
    ),
    TaskTemplate(
        code="medication-reconciliation",
        title="Medication reconciliation",
        description=(
            "Compare the discharge medication list with what the patient takes at home and with the primary care "
            "list; resolve duplicates, omissions and dose changes with the prescriber; give the patient one "
            "updated list."
        ),
        priority="urgent",
        due_in_hours=72,
    ),
    TaskTemplate(
        code="follow-up-appointment-7d",
        title="Follow-up appointment within 7 days",
        description="Book a follow-up visit with the primary care provider within 7 days of discharge.",
        priority="routine",
        due_in_hours=7 * 24,
    ),
    TaskTemplate(
        code="social-needs-screening",
        title="Social needs screening",
        description=(
            "Screen for food, housing, transport, utilities and safety needs (e.g. AHC HRSN) and refer to "
            "community resources where a need is found."
        ),
        priority="routine",
        due_in_hours=14 * 24,
    ),
)
BY_CODE = {template.code: template for template in STANDARD}
