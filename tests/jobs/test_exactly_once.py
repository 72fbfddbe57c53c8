"""Exactly-once assembly: only the parts the done log names make the output, in a fixed order.

A mini-batch whose whole attempt timed out *after* its worker published ``parts/<index>-0000.csv``
is split into one-file pieces; the pieces write ``-0001``, ``-0002``, ... The stale whole part
holds the same rows as the pieces: assembling every part on disk (as the output writer did) would
write those rows twice. The done record names the parts of the attempt that finished, and the
output is assembled from those only. Also: a part is synced to disk (by the server, for a group
of parts at once) before the resume record naming it is written, and a job's resume records reach
the disk (fsync) before they count."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from batchpoint.engines.planning import FileRef, MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.exceptions import PlatformError
from batchpoint.jobs import lifecycle
from batchpoint.jobs.assembly import finished_parts
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.progress import Progress
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.worker.files import write_part


@pytest.fixture
def store(tmp_path: Path):
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    yield store
    store.close()


def _user_error() -> dict:
    return {"type": "ValueError", "message": "bad rows", "where": None, "kind": "user"}


def test_a_superseded_part_is_never_assembled(tmp_path: Path, store: SqlMetadataStore) -> None:
    lifecycle.create(store, "job-1", settings={}, plan={}, inputs={}, outputs={})
    lifecycle.transition(store, "job-1", lifecycle.JobStatus.PREPARING)
    lifecycle.transition(store, "job-1", lifecycle.JobStatus.RUNNING)
    folder = JobFolder.local(tmp_path / "jobs", "job-1")
    parts = Path(folder.parts_dir)
    whole = MiniBatch(0, (FileRef("in", "a.csv"), FileRef("in", "b.csv"), FileRef("in", "c.csv")))
    write_part(parts, whole.key, ["a", "b", "c"])  # published, then the attempt timed out
    pieces = whole.split(final_attempt=1)
    write_part(parts, pieces[0].key, ["a"])
    write_part(parts, pieces[2].key, ["c"])
    other = MiniBatch(1, (FileRef("in", "d.csv"),))
    write_part(parts, other.key, ["d"])

    progress = Progress(store, "job-1", RetryPolicy(0, 60, -1), threading.Event(), folder.done_log())
    progress.on_outcome(MiniBatchOutcome(other, rows=1))
    progress.on_outcome(MiniBatchOutcome(pieces[2], rows=1))
    progress.on_outcome(MiniBatchOutcome(pieces[1], error=_user_error()))
    progress.on_outcome(MiniBatchOutcome(pieces[0], rows=1))
    getattr(progress, "close", lambda: None)()

    records = [json.loads(line) for line in (tmp_path / "jobs" / "job-1" / "done.jsonl").read_text().splitlines()]
    assert [(r["index"], r["parts"]) for r in records] == [(1, ["00000001-0000"]),
                                                            (0, ["00000000-0001", "00000000-0003"])]
    assembled = finished_parts(folder)
    assert [p.name for p in assembled] == ["00000000-0001.csv", "00000000-0003.csv", "00000001-0000.csv"]
    assert "".join(p.read_text() for p in assembled).splitlines() == ["a", "c", "d"]  # each row once, in order
    assert (parts / "00000000-0000.csv").exists()  # kept on disk, but not assembled


def test_a_done_log_from_before_parts_were_named_assembles_the_index_parts(tmp_path: Path) -> None:
    folder = JobFolder.local(tmp_path / "jobs", "old")
    parts = Path(folder.parts_dir)
    for key in ("00000001-0000", "00000000-0000", "00000002-0000"):
        write_part(parts, key, [key])
    (tmp_path / "jobs" / "old" / "done.jsonl").write_text('{"index":1,"rows":1}\n{"index":0,"rows":1}\n')
    assert [p.name for p in finished_parts(folder)] == ["00000000-0000.csv", "00000001-0000.csv"]


def test_a_part_the_done_log_names_but_is_gone_fails_naming_it(tmp_path: Path) -> None:
    folder = JobFolder.local(tmp_path / "jobs", "gone")
    Path(folder.parts_dir).mkdir(parents=True)
    (tmp_path / "jobs" / "gone" / "done.jsonl").write_text('{"index":0,"rows":1,"parts":["00000000-0000"]}\n')
    with pytest.raises(PlatformError, match="00000000-0000.csv of finished mini-batch 0 is missing"):
        finished_parts(folder)


def _running(store: SqlMetadataStore, name: str) -> None:
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    assert lifecycle.transition(store, name, lifecycle.JobStatus.PREPARING)
    assert lifecycle.transition(store, name, lifecycle.JobStatus.RUNNING, "scoring")


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "no-syncfs"])
def test_parts_are_synced_to_disk_before_the_done_records_that_name_them(
        store: SqlMetadataStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool) -> None:
    """Group commit: the worker writes its part without an fsync; the server syncs the group's
    parts (one syncfs, or each part where there is none), then writes and syncs their done records,
    then shows them. Nothing is recorded as done before its part is durable."""
    import batchpoint.outputs.parts as folder_mod  # the parts group commit (sync_parts)

    order: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}"),
                                                 real_fsync(fd))[1])
    if syncfs:
        monkeypatch.setattr(folder_mod, "_sync_filesystem", lambda path: order.append("syncfs") or True)
    else:
        monkeypatch.setattr(folder_mod, "_syncfs", False)
    folder = JobFolder.local(tmp_path / "jobs", "j")
    _running(store, "j")
    parts = Path(folder.parts_dir)
    write_part(parts, "00000000-0000", ["x"])
    assert not order  # the worker's write: no fsync of its own
    done = folder.done_log()
    real_append = done.lines.append
    monkeypatch.setattr(done.lines, "append", lambda *e, **k: (order.append(f"done {len(e)}"), real_append(*e, **k))[1])
    progress = Progress(store, "j", RetryPolicy(), threading.Event(), done, parts_dir=folder.parts_dir)
    try:
        progress.on_outcome(MiniBatchOutcome(MiniBatch(0, (FileRef("in", "a.csv"),)), rows=1))
        # the first: its one part fsynced by itself, then the folder, then its record
        assert order[:3] == [f"fsync {parts}/00000000-0000.csv", f"fsync {parts}", "done 1"], order
        del order[:]
        for i in range(1, 11):
            write_part(parts, f"{i:08d}-0000", ["x"])
            progress.on_outcome(MiniBatchOutcome(MiniBatch(i, (FileRef("in", f"{i}.csv"),)), rows=1))
    finally:
        progress.close()
    first_done = next(i for i, step in enumerate(order) if step.startswith("done"))
    synced_before = order[:first_done]
    if syncfs:
        assert "syncfs" in synced_before, order
    else:
        named = {step.rsplit("/", 1)[-1] for step in synced_before}
        assert {f"{i:08d}-0000.csv" for i in range(1, 11)} <= named, order
    assert sum(int(step.split()[1]) for step in order if step.startswith("done")) == 10
    assert sorted(e["index"] for e in done.lines.entries()) == list(range(11))
    assert store.get_job("j").mini_batches_completed == 11


def test_a_resume_record_is_fsynced_when_written_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    JobFolder.local(tmp_path / "jobs", "j").done_log().add(0, rows=1, parts=["00000000-0000"])
    assert len(synced) == 1