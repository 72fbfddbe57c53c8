"""Cancel a job: it moves to ``Canceled`` (if it had not ended) and its busy workers are stopped at
once; it keeps a partial output (docs/faults.md)."""

from __future__ import annotations

from batchpoint.jobs import children
from batchpoint.store.tables import JobRow
from batchpoint.usecases.services import Services


def cancel(sv: Services, name: str) -> JobRow:
    """Cancel job ``name`` (a batchscoring step's name is refused, naming its job; an unknown job is
    a 404); returns the job as it is after the cancel. Canceling an ended job changes nothing."""
    children.refuse_step(name, "cancel")
    sv.store.get_job(name)
    sv.dispatcher.cancel(name)
    return sv.store.get_job(name)
