"""The writer of job status: every transition is checked against ``states.ALLOWED`` and written as
a compare-and-set, so a cancel and a completion racing each other cannot both win. (Crash recovery
re-queues with ``SqlMetadataStore.requeue_if_stale``, a compare-and-set on the heartbeat too.)"""

from __future__ import annotations

from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.jobs.states import TERMINAL, JobStatus, sources_of
from batchpoint.store.sql import SqlMetadataStore


def transition(store: SqlMetadataStore, name: str, to: JobStatus, message: str | None = None, **fields: Any) -> bool:
    """Move job ``name`` to ``to`` if its current status allows it. Returns whether it moved."""
    if to in TERMINAL:
        fields.setdefault("end_time", utcnow())
    if message is not None:
        fields["status_message"] = message
    return store.update_job(name, expect_status=sources_of(to), status=to.value, **fields)


def fail(store: SqlMetadataStore, name: str, message: str, error: dict[str, Any] | None = None) -> bool:
    return transition(store, name, JobStatus.FAILED, message, error=error or {"message": message})


def record_progress(store: SqlMetadataStore, name: str, **deltas: int) -> None:
    """Add to a running job's counters (files, rows, mini-batches)."""
    store.add_job_counts(name, **deltas)
