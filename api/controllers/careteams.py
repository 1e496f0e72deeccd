"""Routes for care teams (being built)."""

from __future__ import annotations

from litestar import Controller


class CareTeamController(Controller):
    path = "/api/v1"
    tags = ["care teams"]
