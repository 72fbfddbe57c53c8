"""A warm worker's link helper (``storage/local_links.py`` run as a script), driven as the engine
drives it: a links frame and a batch frame on its input, the worker's end of a socket pair standing
in for the sandboxed worker. The checks themselves (a folder or file that leads out of the store) are
tested both in process and through the helper in ``tests/engines/test_warm_links.py``."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from batchpoint.storage import local_links


class Helper:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.worker = Connection(theirs.detach())  # what the sandboxed worker reads
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", local_links.__file__, str(ours.fileno())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(ours.fileno(),),
                                     bufsize=0)
        ours.close()
        self.answers = Connection(os.dup(self.proc.stdout.fileno()), writable=False)

    def send(self, links: dict, payload: bytes) -> None:
        head = json.dumps(links).encode()
        self.proc.stdin.write(struct.pack("!i", len(head)) + head + struct.pack("!i", len(payload)) + payload)

    def passed_on(self) -> bytes:
        assert self.worker.poll(30), "the helper passed nothing on"
        return self.worker.recv_bytes()

    def refused(self) -> list[dict]:
        found = []
        while self.answers.poll(0):
            found.append(json.loads(self.answers.recv_bytes()))
        return found

    def close(self) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=10)
        self.answers.close()
        self.proc.stdout.close()
        self.worker.close()
        return rc


@pytest.fixture
def helper() -> Iterator[Helper]:
    h = Helper()
    yield h
    if h.proc.poll() is None:
        h.proc.kill()
        h.proc.wait()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "a").mkdir(parents=True)
    for i in range(3):
        (root / "a" / f"f{i}.csv").write_text(f"x\n{i}\n")
    return root


def _links(store: Path, in_root: Path, key: str, *paths: str, make: int = 1) -> dict:
    return {"key": key, "roots": {"input": os.path.realpath(store)}, "in": str(in_root),
            "files": [["input", p, make] for p in paths]}


def test_files_are_linked_before_their_frame_is_passed_on_byte_for_byte_and_in_order(helper: Helper, store: Path,
                                                                                       tmp_path: Path) -> None:
    in_root = tmp_path / "in"
    frames = [f'{{"v":2,"type":"batch","key":"k{i}","odd":"\\u00e9 \\n"}}'.encode() for i in range(3)]
    for i, frame in enumerate(frames):
        helper.send(_links(store, in_root, f"k{i}", f"a/f{i}.csv", make=1 if i == 0 else 0), frame)
    for i, frame in enumerate(frames):
        assert helper.passed_on() == frame
        link = in_root / "input" / "a" / f"f{i}.csv"
        assert link.stat().st_ino == (store / "a" / f"f{i}.csv").stat().st_ino  # there when the frame came
    assert helper.refused() == []
    assert helper.close() == 0  # the end of its input ends it


def test_a_missing_file_is_left_to_the_worker_and_a_leading_slash_is_the_same_file(helper: Helper, store: Path,
                                                                                     tmp_path: Path) -> None:
    in_root = tmp_path / "in"
    helper.send(_links(store, in_root, "k", "/a/f0.csv", "a/gone.csv", "nofolder/x.csv"), b'{"k":1}')
    assert helper.passed_on() == b'{"k":1}'
    assert (in_root / "input" / "a" / "f0.csv").is_file()
    assert not (in_root / "input" / "a" / "gone.csv").exists()
    assert helper.refused() == []  # missing is the worker's to say (an input failure), not a refusal


def test_a_refusal_is_answered_before_the_frame_is_passed_on(helper: Helper, store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("server secret\n")
    (store / "a" / "f1.csv").unlink()
    (store / "a" / "f1.csv").symlink_to(outside / "secret")
    (store / "b").symlink_to(outside)
    in_root = tmp_path / "in"
    helper.send(_links(store, in_root, "k", "a/f0.csv", "a/f1.csv", "b/secret"), b'{"k":1}')
    helper.passed_on()
    [answer] = helper.refused()  # already there when the worker has the frame
    assert answer["key"] == "k" and len(answer["refused"]) == 2, answer
    assert "file 'a/f1.csv'" in answer["refused"][0] and "outside the data store" in answer["refused"][0]
    assert "file 'b/secret'" in answer["refused"][1] and "outside the data store" in answer["refused"][1]
    linked = [p for p in in_root.rglob("*") if p.is_file()]
    assert linked == [in_root / "input" / "a" / "f0.csv"]
    assert not any(p.stat().st_ino == (outside / "secret").stat().st_ino for p in linked)


def test_the_helper_ends_when_its_worker_is_gone(helper: Helper, store: Path, tmp_path: Path) -> None:
    helper.worker.close()
    helper.send(_links(store, tmp_path / "in", "k", "a/f0.csv"), b'{"k":1}')
    assert helper.proc.wait(timeout=10) == 0


def test_the_helper_imports_only_the_standard_library(tmp_path: Path) -> None:
    """Run as a script it must start fast and need nothing of the server's environment."""
    probe = ("import runpy, sys; sys.argv = ['x']; "
             f"runpy.run_path({local_links.__file__!r}, run_name='not_main'); "
             "print(sorted(m for m in sys.modules if m.startswith('batchpoint')))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_refusals_of_a_big_mini_batch_are_bounded(helper: Helper, store: Path, tmp_path: Path) -> None:
    """Its answer is read whole while the engine may be writing the next mini-batch to it: it must
    never fill the pipe (the engine would wait on the helper and the helper on the engine)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    names = [f"s{i:03d}.csv" for i in range(300)]
    for name in names:
        (outside / name).write_text("server secret\n")
    (store / "b").symlink_to(outside)
    helper.send(_links(store, tmp_path / "in", "k", *(f"b/{n}" for n in names)), b'{"k":1}')
    helper.passed_on()
    [answer] = helper.refused()
    assert len(answer["refused"]) == local_links.REFUSED_SHOWN + 1
    assert answer["refused"][-1] == f"and {300 - local_links.REFUSED_SHOWN} more files of this mini-batch not linked"
    assert len(json.dumps(answer)) < 16384
