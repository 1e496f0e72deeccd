"""Routes for messaging (being built)."""

from __future__ import annotations

from litestar import Controller


class ThreadController(Controller):
    path = "/api/v1/threads"
    tags = ["messaging"]
