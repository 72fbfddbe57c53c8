"""invoke_requests table: idempotency keys of invokes (repeatability-request-id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('invoke_requests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('principal_id', sa.String(length=255), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('job_name', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('principal_id', 'request_id')
    )
    with op.batch_alter_table('invoke_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoke_requests_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invoke_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoke_requests_created_at'))
    op.drop_table('invoke_requests')
