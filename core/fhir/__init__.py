"""FHIR R4 representations of carehub records."""
