"""The table of allowed job status moves. The names themselves are ``batchpoint.entities.JobStatus``
(re-exported here), so the store and the SDK use the same ones without importing the jobs layer.

``Crashed`` is entered only by crash recovery, and left at once for ``Queued`` in the same
transaction: a job whose server died keeps ``Crashed`` in its history (apart from ``Failed``: its
code did not fail) and resumes from the mini-batches it had finished.
"""

from __future__ import annotations

from batchpoint.entities import TERMINAL_STATUSES, JobStatus

__all__ = ["ACTIVE", "ALLOWED", "ON_A_SERVER", "TERMINAL", "JobStatus", "can_move", "sources_of"]

S = JobStatus
TERMINAL: frozenset[JobStatus] = TERMINAL_STATUSES
#: Held by a server (its heartbeat says it is alive): the statuses crash recovery looks at.
ON_A_SERVER: frozenset[JobStatus] = frozenset({S.PREPARING, S.RUNNING, S.FINALIZING})
ACTIVE: frozenset[JobStatus] = frozenset({S.NOT_STARTED, S.QUEUED}) | ON_A_SERVER

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.NOT_STARTED: frozenset({S.QUEUED, S.FAILED, S.CANCELED}),
    S.QUEUED: frozenset({S.PREPARING, S.FAILED, S.CANCELED}),
    S.PREPARING: frozenset({S.RUNNING, S.FAILED, S.CANCELED, S.CRASHED}),
    S.RUNNING: frozenset({S.FINALIZING, S.FAILED, S.CANCELED, S.CRASHED}),
    S.FINALIZING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED, S.CRASHED}),
    S.CRASHED: frozenset({S.QUEUED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_move(src: str, dst: str) -> bool:
    return JobStatus(dst) in ALLOWED[JobStatus(src)]


def sources_of(dst: JobStatus) -> tuple[str, ...]:
    return tuple(s.value for s, targets in ALLOWED.items() if dst in targets)
