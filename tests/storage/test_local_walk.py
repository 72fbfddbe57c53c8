"""A job's listing of a local data store walks in a process of its own (``storage/local_walk.py``),
and its end-of-job check for changed input files stats them in one too (``jobs/changed_inputs.py``):
both must answer exactly what the in-process code answers, on the names a POSIX folder allows, on
folders bigger than one read of the pipe, and when the process fails or is left early."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.listing import Lister
from batchpoint.storage import local_walk
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.local import LocalBackend
from batchpoint.uri.resolve import ResolvedInput

ODD_NAMES = ["plain.csv", "back\\slash.csv", "new\nline.csv", "tab\there.csv", "space d.csv", "ünï.csv",
             "zero-length.csv"]


def _store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "in" / "sub" / "deeper").mkdir(parents=True)
    for i, name in enumerate(ODD_NAMES):
        (root / "in" / name).write_bytes(b"x" * i)
    (root / "in" / os.fsdecode(b"latin1-\xe9.csv")).write_bytes(b"not utf-8 in its name")
    (root / "in" / ".tmp-being-written").write_bytes(b"skipped")
    (root / "in" / "sub" / "deeper" / "z.csv").write_bytes(b"1,2\n")
    for i in range(3000):  # more than one read of the pipe (64 KiB)
        (root / "in" / "sub" / f"f{i:05d}-{'n' * 40}.csv").write_bytes(b"1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(b"not the store's")
    os.symlink(outside / "secret.csv", root / "in" / "link-out.csv")  # never followed
    os.symlink(outside, root / "in" / "dir-out")
    os.symlink(root / "in" / "sub" / "deeper", root / "in" / "dir-in")  # followed: inside the store
    os.symlink(root / "in" / "plain.csv", root / "in" / "link-in.csv")
    return root


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen]:
    """The processes started (by subprocess.Popen) during the test."""
    found: list[subprocess.Popen] = []
    real = subprocess.Popen

    def popen(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        found.append(real(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    return found


def test_the_walk_apart_lists_what_the_walk_in_process_lists(tmp_path: Path, started: list) -> None:
    root = _store(tmp_path)
    backend = LocalBackend(StorageSpec("local", {"path": str(root)}))
    here = list(backend.iter_files("in"))
    assert not started
    apart = list(backend.iter_files_for_job("in"))
    assert len(started) == 1 and started[0].returncode == 0  # walked apart, to its end
    assert apart == here
    assert [(i.size, i.modified) for i in apart] == [(i.size, i.modified) for i in here]  # modified: not in ==
    paths = [i.path for i in here]
    assert len(paths) == 3000 + len(ODD_NAMES) + 4  # and latin-1, sub/deeper/z, dir-in/z (a linked folder), link-in
    assert "in/.tmp-being-written" not in paths and "in/link-out.csv" not in paths
    assert not any(p.startswith("in/dir-out") for p in paths)
    assert {"in/dir-in/z.csv", "in/link-in.csv", "in/new\nline.csv", "in/back\\slash.csv"} <= set(paths)
    assert os.fsdecode(b"in/latin1-\xe9.csv") in paths
    assert next(i for i in apart if i.path == "in/zero-length.csv").size == ODD_NAMES.index("zero-length.csv")


def test_a_jobs_walk_hands_over_to_its_process_after_the_first_files(tmp_path: Path, started: list) -> None:
    root = _store(tmp_path)
    here = list(local_walk.walk(str(root), str(root / "in")))
    assert list(local_walk.walk_for_job(str(root), str(root / "in"), first=5)) == here
    assert len(started) == 1 and started[0].returncode == 0  # the rest from the process, to its end
    started.clear()
    small = str(root / "in" / "sub" / "deeper")  # fewer files than walked in process first
    assert list(local_walk.walk_for_job(str(root), small)) == list(local_walk.walk(str(root), small))
    assert not started  # a small folder never waits for a process to start


def test_a_folder_that_changed_between_the_two_walks_is_walked_on_in_process(
        tmp_path: Path, started: list, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path)
    here = list(local_walk.walk(str(root), str(root / "in")))
    real = local_walk.walk_apart

    def changed(root_: str, folder: str):  # noqa: ANN202 - a file added at the front meanwhile
        rest = real(root_, folder)
        try:
            found = next(rest)  # its process started
            yield "in/0-added.csv", 1, 1
            yield found
            yield from rest
        finally:
            rest.close()

    monkeypatch.setattr(local_walk, "walk_apart", changed)
    assert list(local_walk.walk_for_job(str(root), str(root / "in"), first=5)) == here
    assert len(started) == 1 and started[0].returncode is not None  # its process ended, not left behind


def test_a_listing_left_early_ends_its_process(tmp_path: Path, started: list) -> None:
    root = _store(tmp_path)
    files = local_walk.walk_apart(str(root), str(root / "in"))
    assert len([next(files) for _ in range(5)]) == 5
    files.close()  # the lister closed (the job canceled)
    assert len(started) == 1 and started[0].returncode is not None  # killed and reaped, not left behind


def test_what_stopped_the_walk_is_raised_as_the_same_error() -> None:
    stream = io.BufferedReader(io.BytesIO(b"3\x0012\x00a.csv\x00!\x0013\x00Permission denied\x00/store/in/locked\x00"))
    files = local_walk._read(stream)
    assert next(files) == ("a.csv", 3, 12)
    with pytest.raises(PermissionError) as info:
        next(files)
    assert info.value.filename == "/store/in/locked" and "Permission denied" in str(info.value)
    cut = local_walk._read(io.BufferedReader(io.BytesIO(b"3\x0012\x00a.csv\x00")))  # the process died
    assert next(cut) == ("a.csv", 3, 12)
    with pytest.raises(OSError, match="stopped early"):
        next(cut)


class _NoStore:
    """The metadata store's calls the listing makes: not the subject here."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return lambda *args, **kwargs: None


def _lister(tmp_path: Path, root: Path) -> Lister:
    spec = StorageSpec("local", {"path": str(root)})
    manifest = JobFolder.local(tmp_path / "jobs", "job").manifest()
    lister = Lister(_NoStore(), "job", [("input_data", ResolvedInput(uri="x", type="uri_folder", spec=spec, path="in"))],  # type: ignore[arg-type]
                    7, manifest, queue_files=10**6)
    lister._list_on(set())
    return lister


def test_the_check_apart_answers_what_the_check_in_process_answers(tmp_path: Path, started: list) -> None:
    root = _store(tmp_path)
    lister = _lister(tmp_path, root)
    started.clear()  # the listing's own
    assert lister.check_changed_files()() == lister.changed_files() == (0, [])
    assert len(started) == 1 and started[0].returncode == 0  # checked apart
    started.clear()
    (tmp_path / "small" / "in").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "small" / "in" / f"{i}.csv").write_text("x\n1\n")
    small = _lister(tmp_path / "small-job", tmp_path / "small")
    (tmp_path / "small" / "in" / "1.csv").write_text("x\n22\n")
    started.clear()
    assert small.check_changed_files()() == (1, ["in/1.csv (size 4 -> 5 bytes)"])
    assert not started  # a small listing is checked in the server: no process to wait for
    (root / "in" / "plain.csv").write_bytes(b"longer than before")
    (root / "in" / "new\nline.csv").unlink()
    os.utime(root / "in" / "sub" / "f00007-" f"{'n' * 40}.csv", ns=(1, 1))  # same size, another time
    os.unlink(root / "in" / "link-in.csv")
    os.symlink(tmp_path / "outside" / "secret.csv", root / "in" / "link-in.csv")  # now leads out of the store
    here, apart = lister.changed_files(limit=10), lister.check_changed_files(limit=10)()
    assert apart == here
    count, shown = here
    assert count == 4, shown
    assert "in/plain.csv (size 0 -> 18 bytes)" in shown and "in/new\nline.csv (removed)" in shown
    assert "in/link-in.csv (removed)" in shown  # no longer a file of the store
    assert any("f00007" in s and "modified (same size)" in s for s in shown)


def test_the_check_falls_back_to_the_server_when_its_process_fails(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path)
    lister = _lister(tmp_path, root)
    (root / "in" / "plain.csv").write_bytes(b"changed")
    monkeypatch.setattr("batchpoint._internal.apart.sys.executable", "/bin/false")  # the process ends badly
    assert lister.check_changed_files()() == (2, ["in/link-in.csv (size 0 -> 7 bytes)",  # a link to it
                                                   "in/plain.csv (size 0 -> 7 bytes)"])
