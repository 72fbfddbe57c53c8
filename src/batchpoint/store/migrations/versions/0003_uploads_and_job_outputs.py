"""uploads table; jobs.output_datastore / output_folder

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('uploads',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('datastore', sa.String(length=255), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output_datastore', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('output_folder', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_output_datastore'), ['output_datastore'], unique=False)
    _backfill_output_locations()


def _backfill_output_locations() -> None:
    """Jobs made before this revision: copy their output's data store and folder into the columns."""
    import json
    import re

    bind = op.get_bind()
    jobs = sa.table('jobs', sa.column('name', sa.String), sa.column('outputs', sa.JSON),
                    sa.column('output_datastore', sa.String), sa.column('output_folder', sa.Text))
    pattern = re.compile(r"^azureml://(?:.*/)?datastores/([^/]+)/paths/?(.*)$")
    for name, outputs in bind.execute(sa.select(jobs.c.name, jobs.c.outputs)).all():
        if isinstance(outputs, str):
            outputs = json.loads(outputs)
        path = ((outputs or {}).get('score') or {}).get('path') or ''
        match = pattern.match(path)
        if match:
            bind.execute(jobs.update().where(jobs.c.name == name).values(
                output_datastore=match.group(1), output_folder=match.group(2).strip('/')))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_output_datastore'))
        batch_op.drop_column('output_folder')
        batch_op.drop_column('output_datastore')
    op.drop_table('uploads')
