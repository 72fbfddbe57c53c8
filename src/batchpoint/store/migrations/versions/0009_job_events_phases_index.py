"""job_events: a partial index of the phase events

``/metrics`` counts environment builds from the ``phase`` events of every job at each scrape
(``server/metrics.py``); with only indexes that begin with ``job_name``, each scrape read the whole
table, one progress event per mini-batch of every job ever run. The index holds the phase events
only (a handful a job): progress events never enter it, so their inserts cost the same.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:45:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_job_events_phases', 'job_events', ['job_name'], unique=False,
                    sqlite_where=sa.text("type = 'phase'"), postgresql_where=sa.text("type = 'phase'"))


def downgrade() -> None:
    op.drop_index('ix_job_events_phases', table_name='job_events')
