"""Routes for tasks (being built)."""

from __future__ import annotations

from litestar import Controller


class TaskController(Controller):
    path = "/api/v1"
    tags = ["tasks"]
