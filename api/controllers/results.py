"""Routes for results (being built)."""

from __future__ import annotations

from litestar import Controller


class ResultController(Controller):
    path = "/api/v1"
    tags = ["results"]
