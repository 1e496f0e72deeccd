"""Routes for fhir (being built)."""

from __future__ import annotations

from litestar import Controller


class FhirController(Controller):
    path = "/fhir"
    tags = ["fhir"]
