"""Job statuses as Azure ML names them, and the table of allowed transitions.

``Queued`` is re-entered only by crash recovery (a job whose server died is queued again and
resumes from the mini-batches it had finished).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


S = JobStatus
TERMINAL: frozenset[JobStatus] = frozenset({S.COMPLETED, S.FAILED, S.CANCELED})
ACTIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - TERMINAL)

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.NOT_STARTED: frozenset({S.QUEUED, S.FAILED, S.CANCELED}),
    S.QUEUED: frozenset({S.PREPARING, S.FAILED, S.CANCELED}),
    S.PREPARING: frozenset({S.RUNNING, S.FAILED, S.CANCELED, S.QUEUED}),
    S.RUNNING: frozenset({S.FINALIZING, S.FAILED, S.CANCELED, S.QUEUED}),
    S.FINALIZING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED, S.QUEUED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_move(src: str, dst: str) -> bool:
    return JobStatus(dst) in ALLOWED[JobStatus(src)]


def sources_of(dst: JobStatus) -> tuple[str, ...]:
    return tuple(s.value for s, targets in ALLOWED.items() if dst in targets)
