"""The standard care plan templates carehub ships; a tenant installs them and may add its own.

Each structured section is a JSON Schema (draft 2020-12); the goals and activities are where a new plan
starts, and the care manager adapts them to the patient.
"""

from __future__ import annotations

from typing import Any

DIABETES_T2: dict[str, Any] = {
    "code": "diabetes-t2",
    "name": "Diabetes - type 2",
    "condition": "Type 2 diabetes mellitus (ICD-10 E11)",
    "description": "Glycaemic control, complication screening and self-management support for adults with type 2 "
    "diabetes, after the ADA Standards of Care.",
    "structured_schema": {
        "type": "object",
        "required": ["hba1c_target_percent", "monitoring", "screening"],
        "additionalProperties": False,
        "properties": {
            "hba1c_target_percent": {"type": "number", "minimum": 5.5, "maximum": 10},
            "last_hba1c_percent": {"type": "number", "minimum": 3, "maximum": 20},
            "monitoring": {
                "type": "object",
                "required": ["glucose_checks_per_day"],
                "additionalProperties": False,
                "properties": {
                    "glucose_checks_per_day": {"type": "integer", "minimum": 0, "maximum": 10},
                    "uses_cgm": {"type": "boolean"},
                },
            },
            "medications": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "dose"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "dose": {"type": "string", "minLength": 1},
                    },
                },
            },
            "screening": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "retinal_exam_due": {"type": "string", "format": "date"},
                    "foot_exam_due": {"type": "string", "format": "date"},
                    "uacr_due": {"type": "string", "format": "date"},
                },
            },
        },
    },
    "goals": [
        {
            "description": "HbA1c below the personal target",
            "measure": "HbA1c (LOINC 4548-4)",
            "target_value": "< 7.0 %",
        },
        {"description": "Blood pressure under control", "measure": "Blood pressure", "target_value": "< 130/80 mmHg"},
        {"description": "Walk 30 minutes on 5 days a week", "measure": "Active days per week", "target_value": "5"},
    ],
    "activities": [
        {"kind": "education", "description": "Diabetes self-management education (DSMES) referral"},
        {"kind": "task", "description": "HbA1c every 3 months until at target, then every 6 months"},
        {"kind": "appointment", "description": "Annual dilated retinal exam"},
        {"kind": "task", "description": "Annual foot exam and urine albumin-to-creatinine ratio"},
    ],
}

HEART_FAILURE: dict[str, Any] = {
    "code": "heart-failure-discharge",
    "name": "Heart failure after discharge",
    "condition": "Heart failure (ICD-10 I50)",
    "description": "The 30 days after a heart failure admission: early follow-up, daily weights, medication "
    "titration and warning signs, to prevent readmission.",
    "structured_schema": {
        "type": "object",
        "required": ["discharge_date", "dry_weight_kg", "ejection_fraction_percent"],
        "additionalProperties": False,
        "properties": {
            "discharge_date": {"type": "string", "format": "date"},
            "dry_weight_kg": {"type": "number", "minimum": 25, "maximum": 300},
            "weight_gain_alert_kg": {"type": "number", "minimum": 0.5, "maximum": 5, "default": 2},
            "ejection_fraction_percent": {"type": "integer", "minimum": 5, "maximum": 80},
            "nyha_class": {"enum": ["I", "II", "III", "IV"]},
            "fluid_limit_ml": {"type": "integer", "minimum": 500, "maximum": 3000},
            "sodium_limit_mg": {"type": "integer", "minimum": 500, "maximum": 3000},
        },
    },
    "goals": [
        {"description": "No readmission within 30 days", "measure": "Readmissions", "target_value": "0"},
        {
            "description": "Weighs every morning and reports a gain over the alert threshold",
            "measure": "Days weighed per week",
            "target_value": "7",
        },
        {
            "description": "On guideline-directed medical therapy at tolerated doses",
            "measure": "GDMT classes",
            "target_value": "4",
        },
    ],
    "activities": [
        {"kind": "task", "description": "Follow-up call within 48 hours of discharge"},
        {"kind": "appointment", "description": "Clinic visit within 7 days of discharge"},
        {"kind": "task", "description": "Medication reconciliation"},
        {"kind": "education", "description": "Teach-back on warning signs, daily weights, fluid and salt limits"},
    ],
}

COPD: dict[str, Any] = {
    "code": "copd",
    "name": "COPD - stable disease and exacerbation prevention",
    "condition": "Chronic obstructive pulmonary disease (ICD-10 J44)",
    "description": "Inhaler technique, vaccinations, pulmonary rehabilitation and an action plan for flare-ups, "
    "after the GOLD report.",
    "structured_schema": {
        "type": "object",
        "required": ["gold_group", "action_plan_given"],
        "additionalProperties": False,
        "properties": {
            "gold_group": {"enum": ["A", "B", "E"]},
            "fev1_percent_predicted": {"type": "integer", "minimum": 5, "maximum": 150},
            "exacerbations_last_year": {"type": "integer", "minimum": 0, "maximum": 50},
            "action_plan_given": {"type": "boolean"},
            "smoking_status": {"enum": ["never", "former", "current"]},
            "home_oxygen_l_min": {"type": "number", "minimum": 0, "maximum": 15},
        },
    },
    "goals": [
        {
            "description": "Fewer than 2 exacerbations a year",
            "measure": "Exacerbations per year",
            "target_value": "< 2",
        },
        {
            "description": "Correct inhaler technique at every review",
            "measure": "Technique check",
            "target_value": "pass",
        },
    ],
    "activities": [
        {"kind": "referral", "description": "Pulmonary rehabilitation"},
        {"kind": "task", "description": "Influenza, pneumococcal and RSV vaccination status"},
        {"kind": "education", "description": "Written exacerbation action plan"},
        {"kind": "task", "description": "Smoking cessation support when the patient smokes"},
    ],
}

BEHAVIOURAL_SOCIAL: dict[str, Any] = {
    "code": "social-needs",
    "name": "Social needs and community support",
    "condition": "Health-related social needs (Z55-Z65)",
    "description": "Food, housing, transport and utilities needs found by screening, with the community referrals "
    "made and followed up.",
    "structured_schema": {
        "type": "object",
        "required": ["needs"],
        "additionalProperties": False,
        "properties": {
            "needs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "enum": ["food", "housing", "transport", "utilities", "safety", "financial", "social_isolation"]
                },
                "uniqueItems": True,
            },
            "screening_tool": {"type": "string", "maxLength": 100},
            "screened_on": {"type": "string", "format": "date"},
        },
    },
    "goals": [{"description": "Each identified need connected to a community resource", "measure": "Needs connected"}],
    "activities": [{"kind": "referral", "description": "Referral to a community resource for each need"}],
}

STANDARD_TEMPLATES: tuple[dict[str, Any], ...] = (DIABETES_T2, HEART_FAILURE, COPD, BEHAVIOURAL_SOCIAL)
