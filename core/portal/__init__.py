"""The patient portal: a patient's own view of their record, built from shapes without staff-only fields."""
