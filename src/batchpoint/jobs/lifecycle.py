"""The only writer of a job's status, and of its history (job events).

Every move is checked against ``states.ALLOWED`` and written as a compare-and-set, so a cancel and
a completion racing each other cannot both win. Each move, and each change of the counters,
appends a **job event** in the same transaction (``SqlMetadataStore`` numbers them per job):

``{"v": 1, "seq": 7, "at": "...", "type": "status" | "progress" | "phase", "status": "Running",
"message": "scoring mini-batches", "data": {"files_completed": 4, ..., "listing_complete": true}}``

``data`` carries the job's counters after the change (``JobProgress``'s fields); a ``Failed`` event
adds ``error``, a ``Crashed`` one ``owner``. Progress events are one per recorded mini-batch outcome
(each carries the counters right after its outcome; not coalesced). ``jobs/progress.py`` writes them
in groups: the outcomes of up to a quarter of a second in one transaction, one UPDATE of the
counters and one multi-row INSERT of their events (:func:`record_progress_each`).

A **phase** event (:func:`phase`) marks a step inside a status, e.g. ``Preparing``'s
``listing`` or ``building environment``: ``data`` has ``phase``, ``state`` (``started`` |
``finished`` | ``failed``) and, when finished, ``seconds``; the job's ``status_message`` follows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from batchpoint._internal.clock import as_utc, utcnow
from batchpoint.entities import JOB_EVENT_VERSION
from batchpoint.jobs.states import ACTIVE, ON_A_SERVER, TERMINAL, JobStatus, sources_of
from batchpoint.store.sql import EventDraft, SqlMetadataStore
from batchpoint.store.tables import JobEventRow, JobRow

QUEUED_MESSAGE = "waiting for a worker"
CRASHED_MESSAGE = ("the server that ran it ({owner}) stopped sending heartbeats; "
                   "finished mini-batches are kept")
RESUMED_MESSAGE = "resumed after the server that ran it stopped; finished mini-batches are kept"
PREPARING_MESSAGE = "resolving inputs and starting workers"
_ACTIVE = tuple(s.value for s in ACTIVE)

log = logging.getLogger(__name__)
T = TypeVar("T")
#: pauses between tries of a write that records a job's end (the metadata database full or locked)
RECORD_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class MetadataUnwritable(Exception):
    """The metadata database refused to record a job's end for ``jobs.record_retry_s``: the job is
    left as it is, and its own server's dispatcher resumes it once its heartbeat is stale (docs/faults.md)."""


def record_with_retries(what: str, fn: Callable[[], T], budget_s: float, stop: threading.Event | None = None) -> T:
    """``fn()``, tried again with backoff (0.5 s doubling to 8 s) while the metadata database
    refuses it (a SQLAlchemy error: full, read-only, locked, unreachable) for up to ``budget_s``
    seconds; then :class:`MetadataUnwritable` naming ``what`` and the last cause. Other errors
    (a Batchpoint error, a bug) are raised at once."""
    deadline = time.monotonic() + budget_s
    for attempt in range(1_000_000):
        try:
            return fn()
        except SQLAlchemyError as exc:  # the database: tried again, then named
            pause = RECORD_PAUSES_S[min(attempt, len(RECORD_PAUSES_S) - 1)]
            if time.monotonic() + pause > deadline or (stop is not None and stop.is_set()):
                raise MetadataUnwritable(f"could not record {what} in the metadata database for {budget_s:.0f} s: "
                                         f"{exc.__class__.__name__}: {exc}") from exc
            log.warning("could not record %s (%s: %s); trying again in %.1f s", what, exc.__class__.__name__, exc,
                        pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


def status_event(status: JobStatus, message: str | None, **data: Any) -> EventDraft:
    return {"type": "status", "status": status.value, "message": message, "data": data}


def create(store: SqlMetadataStore, name: str, message: str = QUEUED_MESSAGE, **fields: Any) -> JobRow:
    """Write a new job, ``Queued``, with its first event."""
    return store.create_job(name=name, status=JobStatus.QUEUED.value, status_message=message,
                            events=[status_event(JobStatus.QUEUED, message)], **fields)


def claim_next(store: SqlMetadataStore, owner: str) -> JobRow | None:
    """Take the oldest ``Queued`` job for server ``owner`` (``Preparing``). ``start_time`` keeps the
    job's first start: a job resumed after a crash started when it first started."""
    now = utcnow()
    return store.claim_next_job(
        source=JobStatus.QUEUED.value, target=JobStatus.PREPARING.value, keep=("start_time",),
        events=[status_event(JobStatus.PREPARING, PREPARING_MESSAGE, owner=owner)],
        owner=owner, start_time=now, heartbeat_at=now, status_message=PREPARING_MESSAGE)


def transition(store: SqlMetadataStore, name: str, to: JobStatus, message: str | None = None, **fields: Any) -> bool:
    """Move job ``name`` to ``to`` if its current status allows it. Returns whether it moved."""
    if to in TERMINAL:
        fields.setdefault("end_time", utcnow())
    if message is not None:
        fields["status_message"] = message
    data = {"error": fields["error"]} if fields.get("error") else {}
    return store.update_job(name, expect_status=sources_of(to), events=[status_event(to, message, **data)],
                            status=to.value, **fields)


def fail(store: SqlMetadataStore, name: str, message: str, error: dict[str, Any] | None = None) -> bool:
    return transition(store, name, JobStatus.FAILED, message, error=error or {"message": message})


def record_progress(store: SqlMetadataStore, name: str, **deltas: int) -> None:
    """Add to a job's counters (files, rows, mini-batches) and append a progress event — while it has
    not ended: a mini-batch that finishes after a cancel changes neither, so the history ends with
    the terminal event."""
    store.add_job_counts(name, expect_status=_ACTIVE, events=[{"type": "progress"}], **deltas)


def record_progress_each(store: SqlMetadataStore, name: str, changes: list[dict[str, int]],
                         owner: str | None = None) -> bool:
    """:func:`record_progress` for several outcomes at once (one transaction): still one progress
    event per outcome, each with the counters right after it (see ``jobs/progress.py``). With
    ``owner``, only while the job is that server's: a server that stalled (SIGSTOP, a long GC
    pause) while another took its job over never adds the mini-batches it finishes afterwards —
    the other server counts them — so each mini-batch counts once per job, whoever reports it.
    Returns whether the counters changed."""
    if not changes:
        return False
    return store.add_job_counts_each(name, changes, {"type": "progress"}, expect_status=_ACTIVE, owner=owner)


def record_listing(store: SqlMetadataStore, name: str, files_total: int, mini_batches_total: int,
                   at: datetime) -> None:
    """The listing ended: the job's totals are known (a progress event with them)."""
    listed = {"type": "progress", "message": f"listing complete: {files_total} file(s) in {mini_batches_total} mini-batch(es)"}
    store.update_job(name, expect_status=_ACTIVE, events=[listed], files_total=files_total,
                     mini_batches_total=mini_batches_total, listing_complete=True, listing_completed_at=at)


def record_listed_so_far(store: SqlMetadataStore, name: str, files_total: int, mini_batches_total: int) -> None:
    """The listing goes on: the files and mini-batches listed so far (``files_total`` only grows
    while ``listing_complete`` is false; clients show it as ``N+``)."""
    listed = {"type": "progress", "message": f"listing: {files_total} file(s) so far"}
    store.update_job(name, expect_status=_ACTIVE, events=[listed], files_total=files_total,
                     mini_batches_total=mini_batches_total)


def phase(store: SqlMetadataStore, name: str, phase_name: str, state: str, message: str,
          **data: Any) -> bool:
    """Note a step of an active job (``state``: started | finished | failed) as a ``phase`` event;
    the job's ``status_message`` becomes ``message``. Returns whether the job was still active."""
    if state not in ("started", "finished", "failed"):
        raise ValueError(f"phase state must be started, finished or failed, not {state!r}")
    event: EventDraft = {"type": "phase", "message": message, "data": {"phase": phase_name, "state": state, **data}}
    return store.update_job(name, expect_status=_ACTIVE, events=[event], status_message=message)


def stale_jobs(store: SqlMetadataStore, older_than: datetime) -> list[JobRow]:
    """Jobs held by a server whose heartbeat is older than ``older_than``."""
    return store.stale_jobs(older_than, statuses=[s.value for s in ON_A_SERVER])


def requeue_crashed(store: SqlMetadataStore, name: str, owner: str | None, older_than: datetime) -> bool:
    """Queue job ``name`` again if its server ``owner`` went silent (heartbeat older than
    ``older_than``; one compare-and-set). Its history shows ``Crashed`` — kept apart from ``Failed``:
    its code did not fail — then ``Queued``; the next claim resumes it."""
    return store.requeue_if_stale(
        name, owner=owner, older_than=older_than, expect_status=sources_of(JobStatus.CRASHED),
        events=[status_event(JobStatus.CRASHED, CRASHED_MESSAGE.format(owner=owner or "unknown"), owner=owner),
                status_event(JobStatus.QUEUED, RESUMED_MESSAGE)],
        status=JobStatus.QUEUED.value, status_message=RESUMED_MESSAGE)


def event_json(row: JobEventRow) -> dict[str, Any]:
    """A stored event as it leaves the server (version ``JOB_EVENT_VERSION``)."""
    at = as_utc(row.at)
    return {"v": JOB_EVENT_VERSION, "seq": row.seq, "at": at.isoformat() if at else None, "type": row.type,
            "status": row.status, "message": row.message, "data": row.data or {}}


def is_terminal_event(row: JobEventRow) -> bool:
    return row.type == "status" and row.status in TERMINAL
