"""Routes for portal (being built)."""

from __future__ import annotations

from litestar import Controller


class PortalController(Controller):
    path = "/api/v1/portal"
    tags = ["portal"]
