"""One part file per worker per job (a *segment*, issue 24 §3): the local pool's workers append each
mini-batch's rows to their segment, the ``done`` reply says where (file, offset, length), the group
commit records it in the done log, and assembly reads exactly those byte ranges — the same output,
byte for byte, as a part file per mini-batch."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from batchpoint.engines.local_pool import _bad_segment
from batchpoint.engines.planning import FileRef, MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.exceptions import PlatformError
from batchpoint.jobs.assembly import finished_parts, write_output
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.progress import Progress
from batchpoint.outputs import writer_for
from batchpoint.outputs.base import Segment, is_segment_name, segment_name
from batchpoint.outputs.parts import SegmentPart
from batchpoint.outputs.rows import mark_mlflow_rows
from batchpoint.worker import loop
from batchpoint.worker.errors import StepFailure
from batchpoint.worker.files import Fetcher, append_part
from batchpoint.workspace import WorkspaceService
from tests.outputs.conftest import make_job, output_file

WRITER = writer_for("append_row")


def _results() -> list[tuple[MiniBatch, Any]]:
    """Mini-batches (a split one among them, one piece failed) and what their run() returned."""
    one = (FileRef("in", "a.csv"),)
    three = (FileRef("in", "b.csv"), FileRef("in", "c.csv"), FileRef("in", "d.csv"))
    return [
        (MiniBatch(0, one), ["x", b"y", 3]),
        (MiniBatch(1, one), pd.DataFrame({"id": [1, 2], "label": ["a b", 'q"uote']})),  # quoted by to_csv
        (MiniBatch(2, one), mark_mlflow_rows(pd.DataFrame({"row": [0, 1], "prediction": [1, 0],
                                                             "file": ["f.csv", "f.csv"]}))),
        (MiniBatch(3, one), []),  # no rows: an empty part
        (MiniBatch(4, three, sub=1, pieces=3), ["piece 1"]),
        (MiniBatch(4, three, sub=2, pieces=3), None),  # this piece failed: never assembled
        (MiniBatch(4, three, sub=3, pieces=3), pd.DataFrame({"v": [1.5, float("nan")]})),
        (MiniBatch(5, one), [f"row {i}" for i in range(50_000)]),  # past the append's 64 KiB buffer
    ]


def _record(ws: WorkspaceService, name: str, outcomes: list[MiniBatchOutcome]) -> None:
    folder = JobFolder.local(ws.settings.jobs_dir, name)
    progress = Progress(ws.store, name, RetryPolicy(), threading.Event(), folder.done_log(),
                        parts_dir=folder.parts_dir, writer=WRITER)
    try:
        for outcome in outcomes:
            progress.on_outcome(outcome)
    finally:
        progress.close()


def _failed(batch: MiniBatch) -> MiniBatchOutcome:
    return MiniBatchOutcome(batch, error={"type": "ValueError", "message": "no", "where": None, "kind": "user"})


def test_a_segmented_job_assembles_byte_for_byte_what_part_files_assemble(ws: WorkspaceService) -> None:
    results = _results()
    make_job(ws, "parts", "append_row")
    parts_dir = Path(JobFolder.local(ws.settings.jobs_dir, "parts").parts_dir)
    outcomes = []
    for batch, result in results:  # the per-part way (Ray's, and every engine's before)
        if result is None:
            outcomes.append(_failed(batch))
            continue
        outcomes.append(MiniBatchOutcome(batch, rows=WRITER.write_part(parts_dir, batch.key, result)))
    _record(ws, "parts", outcomes)
    write_output(ws, ws.store.get_job("parts"), parts_dir)

    make_job(ws, "segs", "append_row")
    seg_dir = Path(JobFolder.local(ws.settings.jobs_dir, "segs").parts_dir)
    workers = [Segment(seg_dir, segment_name(0, ".csv")), Segment(seg_dir, segment_name(1, ".csv"))]
    outcomes = []
    for i, (batch, result) in enumerate(reversed(results)):  # two workers, finishing out of order
        if result is None:
            outcomes.append(_failed(batch))
            continue
        segment = workers[i % 2]
        rows, offset, length = append_part(segment, batch.key, result, WRITER)
        outcomes.append(MiniBatchOutcome(batch, rows=rows, segment=(segment.name, offset, length)))
    _record(ws, "segs", outcomes)
    for segment in workers:
        segment.close()
    assert sorted(p.name for p in seg_dir.iterdir()) == sorted(s.name for s in workers)  # no file per mini-batch
    entries = list(JobFolder.local(ws.settings.jobs_dir, "segs").done_log().lines.entries())
    assert {e["index"]: e["parts"] for e in entries}[4] == ["00000004-0001", "00000004-0003"]
    assert all(set(e["segments"]) == set(e["parts"]) for e in entries)
    write_output(ws, ws.store.get_job("segs"), seg_dir)

    expected = output_file(ws, "parts").read_bytes()
    assert expected.startswith(b'x\ny\n3\n1 "a b"\n2 "q""uote"\n0,1,f.csv\n1,0,f.csv\npiece 1\n1.5\n""\nrow 0\n')
    assert output_file(ws, "segs").read_bytes() == expected
    assert ws.store.get_job("segs").rows == ws.store.get_job("parts").rows == sum(
        o.rows for o in outcomes)


def test_a_done_log_mixing_part_files_and_segments_assembles_in_order(ws: WorkspaceService) -> None:
    """A job resumed by this version after an older one (entries without ``parts``, entries naming
    part files), its new entries naming segments; a split mini-batch with pieces in both."""
    make_job(ws, "mixed", "append_row")
    folder = JobFolder.local(ws.settings.jobs_dir, "mixed")
    parts = Path(folder.parts_dir)
    WRITER.write_part(parts, "00000000-0000", ["old, no parts named"])
    WRITER.write_part(parts, "00000001-0000", ["old, parts named"])
    WRITER.write_part(parts, "00000003-0002", ["piece 2, a part file"])
    segment = Segment(parts, segment_name(7, ".csv"))
    at = {key: append_part(segment, key, [text], WRITER)[1:] for key, text in [
        ("00000003-0001", "piece 1, in a segment"), ("00000002-0000", "new, in a segment"),
        ("00000004-0000", "superseded: named by no entry"), ("00000004-0000", "last, in a segment")]}
    segment.close()
    done = folder.done_log()
    done.add(2, rows=1, parts=["00000002-0000"], segments={"00000002-0000": [segment.name, *at["00000002-0000"]]})
    done.add(0, rows=1)  # from before entries named their parts
    done.add(3, rows=2, parts=["00000003-0001", "00000003-0002"],
             segments={"00000003-0001": [segment.name, *at["00000003-0001"]]})
    done.add(1, rows=1, parts=["00000001-0000"])
    done.add(4, rows=1, parts=["00000004-0000"], segments={"00000004-0000": [segment.name, *at["00000004-0000"]]})
    write_output(ws, ws.store.get_job("mixed"), parts)
    assert output_file(ws, "mixed").read_text() == (
        "old, no parts named\nold, parts named\nnew, in a segment\npiece 1, in a segment\npiece 2, a part file\n"
        "last, in a segment\n")


def test_a_segment_cut_short_or_gone_fails_assembly_naming_it(ws: WorkspaceService) -> None:
    make_job(ws, "cut", "append_row")
    folder = JobFolder.local(ws.settings.jobs_dir, "cut")
    segment = Segment(folder.parts_dir, segment_name(0, ".csv"))
    _, offset, length = append_part(segment, "00000000-0000", ["abc"], WRITER)
    segment.close()
    folder.done_log().add(0, rows=1, parts=["00000000-0000"], segments={"00000000-0000": [segment.name, offset,
                                                                                          length + 1]})
    with pytest.raises(PlatformError, match=rf"5 bytes from 0 in .*{segment.name}\) is missing .*holds 4 bytes"):
        finished_parts(folder)
    os.unlink(segment.path)
    with pytest.raises(PlatformError, match=rf"{segment.name} of finished mini-batch 0 is missing"):
        finished_parts(folder)


def _rows_then_fail(count: int) -> Iterator[str]:
    for i in range(count):
        yield f"written before the failure {i}"
    raise ValueError("the result cannot be written")


def test_a_failed_append_leaves_no_bytes_and_the_next_offset_is_right(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    segment = Segment(tmp_path / "parts", segment_name(0, ".csv"))
    assert append_part(segment, "00000000-0000", ["first"], WRITER) == (1, 0, 6)
    with pytest.raises(ValueError, match="cannot be written"):  # 100,000 rows: some reached the file first
        append_part(segment, "00000001-0000", _rows_then_fail(100_000), WRITER)
    assert os.path.getsize(segment.path) == 6
    real = os.pwrite
    calls = []

    def full(fd: int, data: Any, offset: int) -> int:
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, bytes(data)[:10], offset)  # a short write, then the disk is full

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StepFailure, match=r"mini-batch 00000002-0000 .*No space left on device") as failed:
        append_part(segment, "00000002-0000", [f"line {i}" for i in range(20_000)], WRITER)
    assert failed.value.failure_kind == "platform" and calls[0] == 6
    monkeypatch.setattr(os, "pwrite", real)
    assert os.path.getsize(segment.path) == 6
    assert append_part(segment, "00000003-0000", ["next", "one"], WRITER) == (2, 6, 9)
    segment.close()
    assert Path(segment.path).read_bytes() == b"first\nnext\none\n"


class _Scorer:
    def __init__(self, results: list[Any]) -> None:
        self.results = results

    def run(self, files: list[str]) -> Any:
        return self.results.pop(0)


def _score(job: dict[str, Any], scorer: _Scorer, key: str, tmp_path: Path) -> dict[str, Any]:
    fetcher = Fetcher({}, str(tmp_path / "scratch"))
    try:
        message = {"key": key, "sources": None, "files": [], "attempt": 1}
        return loop._score(message, scorer, fetcher, job, logging.getLogger("test"))
    finally:
        fetcher.close()


def test_the_worker_appends_to_one_segment_per_job_and_its_reply_says_where(tmp_path: Path) -> None:
    parts = tmp_path / "job" / "parts"
    job = {"name": "j1", "worker_id": 3, "parts_dir": str(parts), "output_action": "append_row",
           "scorer": {"scoring_script": None}, "segments": True}
    scorer = _Scorer([["a", "b"], _rows_then_fail(100_000), ["c"]])
    first = _score(job, scorer, "00000000-0000", tmp_path)
    failed = _score(job, scorer, "00000001-0000", tmp_path)
    third = _score(job, scorer, "00000002-0000", tmp_path)
    assert first["error"] is None and failed["error"] is not None and third["error"] is None
    assert "segment" not in failed
    name = first["segment"]["file"]
    assert name.startswith(f"seg-3-{os.getpid()}-") and is_segment_name(name, ".csv")
    assert first["segment"] == {"file": name, "offset": 0, "length": 4}
    assert third["segment"] == {"file": name, "offset": 4, "length": 2}  # the failure's bytes are gone
    assert sorted(p.name for p in parts.iterdir()) == [name]
    assert (parts / name).read_bytes() == b"a\nb\nc\n"
    # the next job of a warm worker: a new segment, never the old one
    job2 = {**job, "name": "j2"}
    other = _score(job2, _Scorer([["d"]]), "00000000-0000", tmp_path)
    assert other["segment"]["file"] != name and other["segment"]["offset"] == 0
    loop._end_segment()
    # no segments asked for (Ray's actors): a part file per mini-batch, no segment in the reply
    ray_parts = tmp_path / "ray" / "parts"
    plain = _score({**job, "segments": False, "parts_dir": str(ray_parts)}, _Scorer([["e"]]), "00000000-0000",
                   tmp_path)
    assert "segment" not in plain and sorted(p.name for p in ray_parts.iterdir()) == ["00000000-0000.csv"]


@pytest.mark.parametrize("segment", [
    {"file": "../done.jsonl", "offset": 0, "length": 1},
    {"file": "seg-0-1-ab/../../x.csv", "offset": 0, "length": 1},
    {"file": "00000000-0000.csv", "offset": 0, "length": 1},
    {"file": "seg-0-1-ab.csv", "offset": -1, "length": 1},
    {"file": "seg-0-1-ab.csv", "offset": 0, "length": "1"},
    ["seg-0-1-ab.csv", 0, 1],
])
def test_the_engine_refuses_a_reply_naming_anything_but_a_segment(segment: Any) -> None:
    assert _bad_segment(segment, ".csv") is not None
    assert _bad_segment({"file": "seg-0-1-ab.csv", "offset": 0, "length": 1}, ".csv") is None


def test_a_segment_part_reads_as_its_own_file_would(tmp_path: Path) -> None:
    """Whole, in chunks, line by line: exactly the range, never a byte of its neighbours."""
    segment = Segment(tmp_path, segment_name(0, ".csv"))
    append_part(segment, "00000000-0000", ["before"], WRITER)
    lines = [f"line {i} " + "x" * (i * 997 % 20000) for i in range(40)]  # lines longer than a read
    _, offset, length = append_part(segment, "00000001-0000", lines, WRITER)
    append_part(segment, "00000002-0000", ["after"], WRITER)
    segment.close()
    expected = "".join(f"{line}\n" for line in lines).encode()
    part = SegmentPart(Path(segment.path), offset, length, 1)
    with part.open("rb") as src:
        assert src.read() == expected and src.read() == b""
    with part.open("rb") as src:
        chunks = []
        while chunk := src.read(1000):
            chunks.append(chunk)
        assert b"".join(chunks) == expected and max(len(c) for c in chunks) == 1000
    with part.open("rb") as src:
        assert list(src) == expected.splitlines(keepends=True)
    with part.open("rb") as src:
        assert src.readline(5) == b"line " and src.readline() == b"0 \n"


def test_a_segment_never_appends_to_a_file_of_the_same_name(tmp_path: Path) -> None:
    """A name taken already (a worker of an earlier run with the same pid and random part): another one."""
    name = segment_name(0, ".csv")
    (tmp_path / name).write_bytes(b"an earlier run's rows\n")
    segment = Segment(tmp_path, name)
    assert append_part(segment, "00000000-0000", ["new"], WRITER) == (1, 0, 4)
    segment.close()
    assert segment.name != name and is_segment_name(segment.name, ".csv")
    assert (tmp_path / name).read_bytes() == b"an earlier run's rows\n"
    assert (tmp_path / segment.name).read_bytes() == b"new\n"
