"""Routes for appointments (being built)."""

from __future__ import annotations

from litestar import Controller


class AppointmentController(Controller):
    path = "/api/v1/appointments"
    tags = ["appointments"]
