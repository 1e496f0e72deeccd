"""Routes for care plans (being built)."""

from __future__ import annotations

from litestar import Controller


class CarePlanController(Controller):
    path = "/api/v1"
    tags = ["care plans"]
