"""job_events: an index on (job_name, type, seq) in place of the one on job_name alone

``job show`` reads a job's status and phase events (its phase timings); a job has one progress
event per mini-batch, and with only (job_name) and the unique (job_name, seq) to go by, each show
read every one of them (200,000 progress events: ~38 ms a show on SQLite). The index on job_name
alone is dropped: the unique (job_name, seq) and the new index both begin with job_name, so it only
cost every event's insert.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:40:00
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_job_events_job_name_type_seq', 'job_events', ['job_name', 'type', 'seq'], unique=False)
    op.drop_index('ix_job_events_job_name', table_name='job_events')


def downgrade() -> None:
    op.create_index('ix_job_events_job_name', 'job_events', ['job_name'], unique=False)
    op.drop_index('ix_job_events_job_name_type_seq', table_name='job_events')
