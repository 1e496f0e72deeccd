"""directory search

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

The permission to search the community resource directories a tenant uses (GET /api/v1/directory/services),
for every staff role that coordinates care. No table: a search asks the tenant's directory plugins and keeps
nothing but its audit event.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

NEW_RULES = tuple(
    (role, "*", "directory", "read") for role in ("tenant_admin", "care_manager", "clinician", "chw", "partner_staff")
)
NEW_OBJECTS = ("directory",)

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rules = sa.table("casbin_rules", *(sa.column(c) for c in ("ptype", "v0", "v1", "v2", "v3", "v4", "v5")))
    op.bulk_insert(
        rules, [{"ptype": "p", "v0": r[0], "v1": r[1], "v2": r[2], "v3": r[3], "v4": "", "v5": ""} for r in NEW_RULES]
    )


def downgrade() -> None:
    rules = sa.table("casbin_rules", *(sa.column(c) for c in ("ptype", "v2")))
    op.execute(rules.delete().where(rules.c.ptype == "p", rules.c.v2.in_(NEW_OBJECTS)))
