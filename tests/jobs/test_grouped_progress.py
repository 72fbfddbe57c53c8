"""The job's counters and progress events are written in groups (``jobs/progress.py``): many
outcomes in one transaction, still one progress event per outcome with the counters right after
it, the resume log on disk before the group shows; and the lister's queue is bounded in files,
whatever the mini-batch size (``jobs/listing.py``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from batchpoint.engines.planning import FileRef, MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.jobs import lifecycle
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.listing import Lister
from batchpoint.exceptions import PlatformError
from batchpoint.jobs.progress import BACKLOG_MAX, Progress
from batchpoint.jobs.states import JobStatus
from batchpoint.store.sql import SqlMetadataStore

pytestmark = pytest.mark.timeout(120)


def running_job(store: SqlMetadataStore) -> str:
    name = f"grouped-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    assert lifecycle.transition(store, name, JobStatus.PREPARING)
    assert lifecycle.transition(store, name, JobStatus.RUNNING, "scoring mini-batches")
    return name


def count_commits(store: SqlMetadataStore) -> list[int]:
    commits = [0]

    @event.listens_for(store.engine, "commit")
    def _commit(_conn) -> None:  # noqa: ANN001
        commits[0] += 1

    return commits


def test_one_transaction_writes_many_outcomes_each_with_its_own_event(store: SqlMetadataStore) -> None:
    name = running_job(store)
    changes = [{"files_completed": 10, "rows": 10 * (i + 1), "mini_batches_completed": 1} for i in range(5)]
    changes.insert(2, {"files_completed": 0, "rows": 0})  # a change of nothing has no event, as before
    commits = count_commits(store)
    lifecycle.record_progress_each(store, name, changes)
    assert commits[0] == 1
    progress = [e for e in store.list_job_events(name) if e.type == "progress"]
    assert [e.data["mini_batches_completed"] for e in progress] == [1, 2, 3, 4, 5]
    assert [e.data["rows"] for e in progress] == [10, 30, 60, 100, 150]
    assert [e.seq for e in progress] == list(range(progress[0].seq, progress[0].seq + 5))
    job = store.get_job(name)
    assert (job.files_completed, job.rows, job.mini_batches_completed) == (50, 150, 5)

    assert lifecycle.transition(store, name, JobStatus.CANCELED, "canceled by the user")
    lifecycle.record_progress_each(store, name, changes)  # after the end: neither counters nor events
    assert store.get_job(name).mini_batches_completed == 5
    assert store.list_job_events(name)[-1].status == "Canceled"


def test_progress_groups_outcomes_and_syncs_the_resume_log_first(store: SqlMetadataStore, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    name = running_job(store)
    folder = JobFolder.local(tmp_path / "jobs", name)
    done, manifest = folder.done_log(), folder.manifest()
    order: list[str] = []
    monkeypatch.setattr(done.lines, "sync", lambda: order.append("done synced"))
    monkeypatch.setattr(manifest.lines, "sync", lambda: order.append("manifest synced"))
    real = lifecycle.record_progress_each

    def recorded(store_: SqlMetadataStore, job: str, changes: list[dict[str, int]]) -> None:
        order.append(f"{len(changes)} written")
        real(store_, job, changes)

    monkeypatch.setattr("batchpoint.jobs.progress.record_progress_each", recorded)
    progress = Progress(store, name, RetryPolicy(), threading.Event(), done, manifest)
    try:
        for i in range(50):
            batch = MiniBatch(i, (FileRef("input_data", f"f{i}.csv"),))
            manifest.add(batch, durable=False)
            progress.on_outcome(MiniBatchOutcome(batch, rows=1))
    finally:
        progress.close()
    written = [int(o.split()[0]) for o in order if o.endswith("written")]
    assert sum(written) == 50
    assert len(written) < 10, order  # grouped: 50 quick outcomes, a few writes (the first one alone)
    assert written[0] == 1  # the first scored mini-batch shows at once
    for i, step in enumerate(order):  # every write comes after both logs were synced
        if step.endswith("written"):
            assert order[i - 2:i] == ["manifest synced", "done synced"], order
    events = [e for e in store.list_job_events(name, limit=1000) if e.type == "progress"]
    assert [e.data["mini_batches_completed"] for e in events] == list(range(1, 51))
    job = store.get_job(name)
    assert (job.files_completed, job.rows, job.mini_batches_completed) == (50, 50, 50)
    assert job.first_mini_batch_at is not None
    assert len(list(done.lines.entries())) == 50


@pytest.mark.parametrize("mini_batch_size", [1, 10, 100, 1000, 50_000])
def test_the_listers_queue_holds_a_bounded_number_of_files(tmp_path: Path, mini_batch_size: int) -> None:
    manifest = JobFolder.local(tmp_path, "job").manifest()
    lister = Lister(None, "job", [], mini_batch_size, manifest)  # type: ignore[arg-type]
    held = lister.q.maxsize * mini_batch_size
    assert held <= max(10_000, 2 * mini_batch_size), held  # at most 10,000 files, or two mini-batches
    small = Lister(None, "job", [], mini_batch_size, manifest, queue_files=500)  # type: ignore[arg-type]
    assert small.q.maxsize * mini_batch_size <= max(500, 2 * mini_batch_size)


def stalled_done_log(store: SqlMetadataStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     then: Callable[[Callable[[], None]], None]) -> tuple[str, Any, Any, threading.Event]:
    """A running job whose done log syncs the first time (the first scored mini-batch's own flush),
    then stalls until the returned event is set and does ``then(the real sync)``: (job, done log,
    manifest, event)."""
    name = running_job(store)
    folder = JobFolder.local(tmp_path / "jobs", name)
    done, manifest = folder.done_log(), folder.manifest()
    disk = threading.Event()
    real_sync, calls = done.lines.sync, [0]

    def stalled() -> None:
        calls[0] += 1
        if calls[0] > 1:
            disk.wait(30)
            then(real_sync)
        else:
            real_sync()

    monkeypatch.setattr(done.lines, "sync", stalled)
    return name, done, manifest, disk


def test_a_slow_disk_holds_the_engine_at_the_backlog_bound(store: SqlMetadataStore, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The done log's sync is stuck (a slow disk): the engine's outcomes pile up to BACKLOG_MAX, then
    the engine waits (it hands out no more work) until they are written; nothing is lost or doubled."""
    name, done, manifest, disk = stalled_done_log(store, tmp_path, monkeypatch, lambda sync: sync())
    progress = Progress(store, name, RetryPolicy(), threading.Event(), done, manifest)
    handed = [0]

    def engine() -> None:
        for i in range(BACKLOG_MAX + 50):
            batch = MiniBatch(i, (FileRef("input_data", f"f{i}.csv"),))
            manifest.add(batch, durable=False)
            progress.on_outcome(MiniBatchOutcome(batch, rows=1))
            handed[0] = i + 1

    thread = threading.Thread(target=engine)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        while handed[0] < BACKLOG_MAX and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert thread.is_alive() and handed[0] < BACKLOG_MAX + 2, handed  # held at the bound: the disk is behind
        disk.set()
        thread.join(20)
        assert not thread.is_alive() and handed[0] == BACKLOG_MAX + 50
    finally:
        disk.set()
        thread.join(20)
        progress.close()
    assert sorted(e["index"] for e in done.lines.entries()) == list(range(BACKLOG_MAX + 50))
    assert store.get_job(name).mini_batches_completed == BACKLOG_MAX + 50


def test_a_disk_that_fails_while_the_engine_waits_fails_the_job_with_why(store: SqlMetadataStore, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def full(sync: Callable[[], None]) -> None:
        raise OSError(28, "No space left on device")

    name, done, manifest, disk = stalled_done_log(store, tmp_path, monkeypatch, full)
    progress = Progress(store, name, RetryPolicy(), threading.Event(), done, manifest)
    raised: list[BaseException] = []

    def engine() -> None:
        try:
            for i in range(BACKLOG_MAX + 50):
                batch = MiniBatch(i, (FileRef("input_data", f"f{i}.csv"),))
                manifest.add(batch, durable=False)
                progress.on_outcome(MiniBatchOutcome(batch, rows=1))
        except BaseException as exc:  # noqa: BLE001 - what the engine would raise
            raised.append(exc)

    thread = threading.Thread(target=engine)
    thread.start()
    time.sleep(1.0)
    disk.set()
    thread.join(20)
    assert not thread.is_alive()
    assert raised and isinstance(raised[0], PlatformError), raised
    assert "No space left on device" in str(raised[0]) and "resume log" in str(raised[0])
    with pytest.raises(PlatformError):
        progress.close()
