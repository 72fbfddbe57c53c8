"""Job events are numbered per job without gaps or repeats when several writers change one job at
once (the engine's outcome callbacks, a cancel, crash recovery on another server), on SQLite and on
PostgreSQL (``scripts/test.sh`` starts it; ``postgres_url``): each event is appended in the same
transaction as its change, and a lost compare-and-set appends nothing."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from batchpoint._internal.clock import utcnow
from batchpoint.jobs import lifecycle
from batchpoint.jobs.states import JobStatus
from batchpoint.store.sql import SqlMetadataStore

pytestmark = pytest.mark.timeout(120)

WRITERS, EACH = 4, 25


def test_concurrent_writers_number_one_job_without_gaps(store: SqlMetadataStore) -> None:
    name = f"numbered-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    assert lifecycle.transition(store, name, JobStatus.PREPARING)
    assert lifecycle.transition(store, name, JobStatus.RUNNING, "scoring mini-batches")
    errors: list[BaseException] = []
    wins: list[bool] = []
    progressed = threading.Barrier(WRITERS, timeout=60)

    def write() -> None:
        try:
            for _ in range(EACH):
                lifecycle.record_progress(store, name, files_completed=1, rows=10, mini_batches_completed=1)
            progressed.wait()  # then all of them race to cancel
            wins.append(lifecycle.transition(store, name, JobStatus.CANCELED, "canceled by the user"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(wins) == [False] * (WRITERS - 1) + [True]  # one cancel wins; the others append nothing

    events = store.list_job_events(name, limit=1000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.status if e.type == "status" else e.type for e in events]
    assert kinds[:3] == ["Queued", "Preparing", "Running"] and kinds.count("Canceled") == 1
    progress = [e for e in events if e.type == "progress"]
    assert len(progress) == WRITERS * EACH
    # each progress event holds the counters right after its own change: all different, none lost
    assert sorted(e.data["mini_batches_completed"] for e in progress) == list(range(1, WRITERS * EACH + 1))
    assert store.get_job(name).rows == WRITERS * EACH * 10
    assert kinds[-1] == "Canceled"

    # a mini-batch that finishes after the job ended changes nothing: the history ends with its end
    lifecycle.record_progress(store, name, files_completed=1, rows=10, mini_batches_completed=1)
    assert [e.seq for e in store.list_job_events(name, limit=1000)] == [e.seq for e in events]
    assert store.get_job(name).rows == WRITERS * EACH * 10


def test_listing_totals_and_first_start_are_recorded(store: SqlMetadataStore) -> None:
    """The end of the listing is a progress event carrying the totals; a second claim (a resume)
    keeps the first start time."""
    name = f"listed-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    claimed = _claim(store, name, "server-a")
    first_start = claimed.start_time
    lifecycle.record_listing(store, name, files_total=7, mini_batches_total=3, at=utcnow())
    last = store.list_job_events(name, limit=1000)[-1]
    assert last.type == "progress" and (last.data["files_total"], last.data["mini_batches_total"]) == (7, 3)
    assert last.data["listing_complete"] is True

    store.update_job(name, heartbeat_at=utcnow() - timedelta(seconds=120))
    assert lifecycle.requeue_crashed(store, name, "server-a", utcnow() - timedelta(seconds=60))
    again = _claim(store, name, "server-b")
    assert again.owner == "server-b" and again.start_time == first_start
    kinds = [e.status or e.type for e in store.list_job_events(name, limit=1000)]
    assert kinds == ["Queued", "Preparing", "progress", "Crashed", "Queued", "Preparing"], kinds


def _claim(store: SqlMetadataStore, name: str, owner: str):  # noqa: ANN202
    """Claim until job ``name`` is the one claimed (other queued jobs may share a PostgreSQL database)."""
    for _ in range(200):
        claimed = lifecycle.claim_next(store, owner)
        assert claimed is not None, f"job {name} was not claimable"
        if claimed.name == name:
            return claimed
    raise AssertionError(f"job {name} not claimed within 200 claims")
