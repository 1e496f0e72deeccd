"""plugin pushes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

What each plugin's system answered when carehub sent it a care plan or a task (its id there and a URL), or the
error of the last try, per tenant, plugin and record. No new permission: tenant admins' ``plugins`` rules cover
the list of pushes and the health check.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TENANT_MATCH = (
    "(tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
    " OR current_setting('app.network_scope', true) = 'on')"
)

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('plugin_pushes',
    sa.Column('plugin', sa.String(length=40), nullable=False),
    sa.Column('resource_type', sa.String(length=16), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('record_updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('location', sa.String(length=500), nullable=True),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tried_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_plugin_pushes_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plugin_pushes')),
    sa.UniqueConstraint('tenant_id', 'plugin', 'resource_type', 'resource_id', name=op.f('uq_plugin_pushes_tenant_id_plugin_resource_type_resource_id'))
    )
    with op.batch_alter_table('plugin_pushes', schema=None) as batch_op:
        batch_op.create_index('ix_plugin_pushes_recent', ['tenant_id', 'plugin', 'tried_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_plugin_pushes_tenant_id'), ['tenant_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE plugin_pushes ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE plugin_pushes FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON plugin_pushes USING {TENANT_MATCH} WITH CHECK {TENANT_MATCH}")


def downgrade() -> None:
    with op.batch_alter_table('plugin_pushes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plugin_pushes_tenant_id'))
        batch_op.drop_index('ix_plugin_pushes_recent')

    op.drop_table('plugin_pushes')
