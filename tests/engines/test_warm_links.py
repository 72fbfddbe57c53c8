"""A warm worker's input links (engines/warm.py): the check that a link's target lies inside the
exchange folder's ``in/`` resolves a mini-batch's folder once instead of every file's path twice
(issue 24, tiny files). It must answer exactly as resolving the whole target does, also for ``..``
in the path, a ``..`` name and a folder that is a link out of ``in/`` (only the engine writes in ``in/``:
the worker has it read-only)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from batchpoint.engines.planning import EngineJob, RetryPolicy
from batchpoint.engines.warm import WarmWorker
from batchpoint.storage.base import StorageSpec


def _worker(exchange: Path) -> WarmWorker:
    return WarmWorker(id="w", key="k", deployment="e/d", exchange=exchange, boot_log=exchange / "boot.log", idle_s=1)


def _whole(exchange: Path, target: Path) -> bool:
    return target.resolve().is_relative_to((exchange / "in").resolve())


@pytest.fixture
def exchange(tmp_path: Path) -> Path:
    root = tmp_path / "exchange"
    (root / "in" / "data" / "1" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "in" / "data" / "1" / "out").symlink_to(tmp_path / "elsewhere")  # a planted link out of in/
    return root


TARGETS = ["data/1/a.csv", "data/1/sub/b.csv", "data/1/../../../x.csv", "data/1/..", "data/1/.", "data/1/out/c.csv",
           "data/2/new/d.csv", "data/1/sub/../../../../../etc/passwd", "../in/data/1/e.csv"]


@pytest.mark.parametrize("rel", TARGETS)
def test_the_folder_at_a_time_check_answers_as_resolving_the_whole_target(exchange: Path, rel: str) -> None:
    worker = _worker(exchange)
    target = exchange / "in" / rel
    assert worker._inside_in(target) == _whole(exchange, target)
    for other in TARGETS:  # asked again after others, and its folder remembered: the same answer
        worker._inside_in(exchange / "in" / other)
    assert worker._inside_in(target) == _whole(exchange, target)
    assert worker._inside_in(target.parent / "sibling.csv") == _whole(exchange, target.parent / "sibling.csv")


def test_a_file_in_a_folder_linked_out_of_in_is_refused(exchange: Path) -> None:
    worker = _worker(exchange)
    assert worker._inside_in(exchange / "in" / "data" / "1" / "a.csv")
    assert not worker._inside_in(exchange / "in" / "data" / "1" / "out" / "c.csv")
    assert not worker._inside_in(exchange / "in" / "data" / "1" / ".." / ".." / ".." / "x.csv")


# --- the store's side of a link: a folder swapped for a symbolic link during the job ----------------


def _job(tmp_path: Path, **stores: Path) -> EngineJob:
    return EngineJob(name="j", workers=1, scorer={}, sources={k: StorageSpec("local", {"path": str(v)}, None)
                                                            for k, v in stores.items()},
                     policy=RetryPolicy(0, 60.0, -1), parts_dir=str(tmp_path / "job" / "parts"),
                     logs_dir=str(tmp_path / "job" / "logs"))


def _exchange_worker(tmp_path: Path) -> WarmWorker:
    worker = _worker(tmp_path / "exchange")
    for name in ("in", "parts"):
        (worker.exchange / name).mkdir(parents=True)
    return worker


#: how a mini-batch's files are linked: by the engine in process, or by the worker's link helper
#: (storage/local_links.py, a process of its own, which passes the batch frame on to the worker)
VIA = ["in process", "link helper"]


@pytest.fixture(params=VIA)
def via(request: pytest.FixtureRequest) -> Iterator[str]:
    started: list[WarmWorker] = []
    request.node.started = started
    yield request.param
    for worker in started:
        worker.end_linker()


def _linking_worker(tmp_path: Path, via: str, request: pytest.FixtureRequest) -> WarmWorker:
    """A warm worker's engine side; with its link helper on one end of a socket pair standing in for
    the worker's (the test reads what the helper passes on from the other end)."""
    worker = _exchange_worker(tmp_path)
    if via == "link helper":
        ours, theirs = socket.socketpair()
        worker.conn, worker.peer = Connection(ours.detach()), Connection(theirs.detach())
        worker.start_linker()
        assert worker.linker is not None
        request.node.started.append(worker)
    return worker


def _send(worker: WarmWorker, job: EngineJob, message: dict) -> dict:
    """The batch message as the worker gets it (its files linked)."""
    out = worker.batch_message(job, message)
    if out is not None:
        return out
    peer = worker.peer
    assert peer.poll(30), "the link helper did not pass the batch on"
    forwarded = json.loads(peer.recv_bytes())  # byte for byte what the engine encoded
    assert worker.read_linker(), "the link helper ended"  # its refusals came before the frame
    return forwarded


def _batch(key: str, *files: tuple[str, str]) -> dict:
    return {"type": "batch", "key": key, "files": [{"source": s, "path": p} for s, p in files]}


def _linked(worker: WarmWorker, message: dict) -> list[Path]:
    return [worker.exchange / "in" / f["source"] / f["path"] for f in message["files"]]


def test_a_folder_swapped_for_a_link_out_of_the_store_between_two_mini_batches_is_not_linked(tmp_path: Path, via: str, request: pytest.FixtureRequest) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    (store / "a").mkdir(parents=True)
    (store / "a" / "f.csv").write_text("x\n1\n")
    (store / "a" / "g.csv").write_text("x\n2\n")
    outside.mkdir()
    (outside / "g.csv").write_text("server secret\n")
    worker = _linking_worker(tmp_path, via, request)
    job = _job(tmp_path, input=store)

    first = _send(worker, job, _batch("k1", ("input", "a/f.csv")))
    [link] = _linked(worker, first)
    assert link.stat().st_ino == (store / "a" / "f.csv").stat().st_ino  # the store's file, linked
    assert worker.done(job, "k1", None) is None

    (store / "a").rename(tmp_path / "moved-away")  # the store's folder swapped for a link out of it
    (store / "a").symlink_to(outside)
    second = _send(worker, job, _batch("k2", ("input", "a/g.csv")))
    [link] = _linked(worker, second)
    assert not link.exists(), "the server linked a file from outside the store into the worker"
    assert not any(p.is_file() and p.stat().st_ino == (outside / "g.csv").stat().st_ino
                   for p in (worker.exchange / "in").rglob("*"))
    missing = {"type": "StepFailure", "kind": "input", "message": "input/a/g.csv was not found", "where": None,
               "traceback": ""}  # what the worker says of a file it does not find
    error = worker.done(job, "k2", missing)
    assert error is not None and error["kind"] == "input", error
    assert "a/g.csv" in error["message"] and "outside the data store" in error["message"], error
    assert "symbolic link" in error["message"]


def test_a_file_swapped_for_a_link_out_of_the_store_is_not_linked(tmp_path: Path, via: str, request: pytest.FixtureRequest) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    (store / "a").mkdir(parents=True)
    for name in ("f.csv", "g.csv"):
        (store / "a" / name).write_text("x\n1\n")
    outside.mkdir()
    (outside / "secret").write_text("server secret\n")
    worker = _linking_worker(tmp_path, via, request)
    job = _job(tmp_path, input=store)
    assert all(p.exists() for p in _linked(worker, _send(worker, job, _batch("k1", ("input", "a/f.csv")))))
    (store / "a" / "g.csv").unlink()
    (store / "a" / "g.csv").symlink_to(outside / "secret")
    [link] = _linked(worker, _send(worker, job, _batch("k2", ("input", "a/g.csv"))))
    assert not link.exists() and not link.is_symlink()
    error = worker.done(job, "k2", None)
    assert error is not None and "outside the data store" in error["message"], error


def test_a_link_to_a_file_inside_the_store_is_still_given(tmp_path: Path, via: str, request: pytest.FixtureRequest) -> None:
    store = tmp_path / "store"
    (store / "a").mkdir(parents=True)
    (store / "real.csv").write_text("x\n1\n")
    (store / "a" / "alias.csv").symlink_to(store / "real.csv")
    worker = _linking_worker(tmp_path, via, request)
    job = _job(tmp_path, input=store)
    [link] = _linked(worker, _send(worker, job, _batch("k1", ("input", "a/alias.csv"))))
    assert not link.is_symlink() and link.stat().st_ino == (store / "real.csv").stat().st_ino
    assert worker.done(job, "k1", None) is None


def test_two_local_inputs_keep_one_backend_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for store in (one, two):
        store.mkdir()
        for i in range(3):
            (store / f"{i}.csv").write_text("x\n1\n")
    opened: list[str] = []
    from batchpoint.storage import registry

    real_open = registry.open_backend

    def counting(spec: StorageSpec) -> object:
        opened.append(spec.config["path"])
        return real_open(spec)

    monkeypatch.setattr(registry, "open_backend", counting)
    worker = _exchange_worker(tmp_path)
    job = _job(tmp_path, one=one, two=two)
    for i in range(3):
        message = worker.batch_message(job, _batch(f"k{i}", ("one", f"{i}.csv"), ("two", f"{i}.csv")))
        assert all(p.is_file() for p in _linked(worker, message))
    assert sorted(opened) == [str(one), str(two)], opened


# --- links kept per job, not per mini-batch (issue 24 §3, fenced tiny files) ------------------------


def test_links_are_made_at_the_stores_paths_once_per_job_and_leave_the_exchange_at_its_end(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "d0").mkdir(parents=True)
    for i in range(6):
        (store / "d0" / f"f{i}.csv").write_text(f"x\n{i}\n")
    worker = _exchange_worker(tmp_path)
    job = _job(tmp_path, input=store)
    inputs = worker.exchange / "in" / "input"
    given = []
    for n in range(3):  # three mini-batches of two files, the second sent again (a retry)
        message = worker.batch_message(job, _batch(f"k{n}", ("input", f"d0/f{2 * n}.csv"), ("input", f"d0/f{2 * n + 1}.csv")))
        given += [f["path"] for f in message["files"]]
        assert worker.done(job, f"k{n}", None) is None
    again = worker.batch_message(job, _batch("k1", ("input", "d0/f2.csv"), ("input", "d0/f3.csv")))
    assert [f["path"] for f in again["files"]] == ["d0/f2.csv", "d0/f3.csv"]
    # the worker is given each file at its path in the store, not in a folder made per mini-batch
    assert given == [f"d0/f{i}.csv" for i in range(6)]
    assert sorted(p.name for p in inputs.iterdir()) == ["d0"]
    assert all((inputs / "d0" / f"f{i}.csv").stat().st_ino == (store / "d0" / f"f{i}.csv").stat().st_ino
               for i in range(6))
    worker.end_job(job)  # before the worker may take another job: nothing of this one is in its view
    assert list((worker.exchange / "in").iterdir()) == []
    assert not any(p.is_file() for p in worker.exchange.rglob("*"))
    deadline = time.monotonic() + 10
    while any(p.name.startswith(".trash-") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the links were moved beside the exchange folder, then removed in the background
    assert not any(p.name.startswith(".trash-") for p in tmp_path.iterdir())
    # the next job links again (the folders made for the last one are gone)
    message = worker.batch_message(job, _batch("k9", ("input", "d0/f5.csv")))
    assert (worker.exchange / "in" / "input" / message["files"][0]["path"]).is_file()


def test_the_sweep_removes_the_links_of_a_worker_whose_server_is_gone(tmp_path: Path) -> None:
    from batchpoint.engines.warm import _sweep

    root = tmp_path / "warm"
    (root / ".trash-aaaaaaaaaaaa-1234abcd" / "input").mkdir(parents=True)  # its worker's boot log is gone
    (root / ".trash-aaaaaaaaaaaa-1234abcd" / "input" / "f.csv").write_text("x\n")
    (root / ".trash-bbbbbbbbbbbb-5678abcd").mkdir()  # a live worker's (its boot log held): left to it
    (root / "bbbbbbbbbbbb.log").write_text("")
    fd = os.open(root / "bbbbbbbbbbbb.log", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        _sweep(root)
    finally:
        os.close(fd)
    assert sorted(p.name for p in root.iterdir()) == [".trash-bbbbbbbbbbbb-5678abcd", "bbbbbbbbbbbb.log"]


# --- a warm worker's segment (one part file per worker and job) linked into the job's parts/ once ----


def test_a_segment_is_linked_into_the_jobs_parts_once_and_keeps_growing_there(tmp_path: Path) -> None:
    worker = _exchange_worker(tmp_path)
    job = _job(tmp_path, input=tmp_path)
    Path(job.parts_dir).mkdir(parents=True)
    segment = worker.parts / "seg-0-123-abcd.csv"
    segment.write_bytes(b"a\n")
    assert worker.done(job, "00000000-0000", None, segment.name) is None
    linked = Path(job.parts_dir) / segment.name
    assert linked.stat().st_ino == segment.stat().st_ino
    with open(segment, "ab") as out:  # the worker appends the next mini-batch's rows
        out.write(b"b\n")
    assert worker.done(job, "00000001-0000", None, segment.name) is None
    assert linked.read_bytes() == b"a\nb\n"
    worker.end_job(job)  # the exchange folder emptied: the job's link keeps the rows
    assert not segment.exists() and linked.read_bytes() == b"a\nb\n"


def test_a_segment_the_worker_swapped_for_a_link_is_not_linked(tmp_path: Path) -> None:
    worker = _exchange_worker(tmp_path)
    job = _job(tmp_path, input=tmp_path)
    Path(job.parts_dir).mkdir(parents=True)
    secret = tmp_path / "owner.key"
    secret.write_text("server secret\n")
    (worker.parts / "seg-0-1-ffff.csv").symlink_to(secret)  # a hostile script's doing
    error = worker.done(job, "00000000-0000", None, "seg-0-1-ffff.csv")
    assert error is not None and error["kind"] == "platform" and "not a regular file" in error["message"], error
    assert not (Path(job.parts_dir) / "seg-0-1-ffff.csv").exists()
    assert not (Path(job.parts_dir) / "seg-0-1-ffff.csv").is_symlink()
