"""A worker downloads a mini-batch's files from a remote store several at a time
(``worker/files.py Fetcher.fetch``): a mini-batch of small blobs waits on round trips, not on
bandwidth. The paths come back in the mini-batch's order; when files fail, every download has ended
and the first failing file (in order) is the one reported, with its kind."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batchpoint.exceptions import StorageNotFoundError
from batchpoint.storage.base import StorageSpec
from batchpoint.worker import files as worker_files
from batchpoint.worker.errors import StepFailure
from batchpoint.worker.protocol import spec_to_dict


class SlowRemote:
    """A remote store whose every download takes ``delay`` seconds; names starting with ``gone``
    are not found, ``down`` ones fail as a fault of the store."""

    kind = "azure_blob"

    def __init__(self, delay: float) -> None:
        self.delay, self.lock = delay, threading.Lock()
        self.running = self.most = 0
        self.ended: list[str] = []

    def local_path(self, path: str) -> None:
        return None

    def get_file(self, path: str, local: str) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            name = path.rsplit("/", 1)[-1]
            if name.startswith("gone"):
                raise StorageNotFoundError(f"{path} not found")
            if name.startswith("down"):
                raise ConnectionError("the store hung up")
            Path(local).write_text(f"x\n{name}\n")
        finally:
            with self.lock:
                self.running -= 1
                self.ended.append(path)


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> SlowRemote:
    store = SlowRemote(0.2)
    monkeypatch.setattr(worker_files, "open_backend", lambda spec: store)
    return store


def _fetcher(tmp_path: Path) -> Any:
    return worker_files.Fetcher({"in": spec_to_dict(StorageSpec("azure_blob", {"container": "c"}, None))},
                                str(tmp_path / "tmp"))


def test_remote_files_are_downloaded_several_at_a_time_and_come_back_in_order(
        remote: SlowRemote, tmp_path: Path) -> None:
    fetcher = _fetcher(tmp_path)
    try:
        names = [f"folder/f{i:02d}.csv" for i in range(16)]
        started = time.monotonic()
        paths = fetcher.fetch([{"source": "in", "path": n} for n in names], "00000000-0000")
        took = time.monotonic() - started
        assert [Path(p).read_text().split()[1] for p in paths] == [n.rsplit("/", 1)[-1] for n in names]
    finally:
        fetcher.close()
    assert remote.most == worker_files.FETCH_CONCURRENCY > 1
    assert took < 16 * remote.delay / 2  # one by one would take 3.2 s


def test_the_first_failing_file_in_order_is_reported_after_every_download_ended(
        remote: SlowRemote, tmp_path: Path) -> None:
    fetcher = _fetcher(tmp_path)
    names = ["a.csv", "b.csv", "gone-c.csv", "down-d.csv", "e.csv"]
    try:
        with pytest.raises(StepFailure) as caught:
            fetcher.fetch([{"source": "in", "path": n} for n in names], "00000003-0000")
        assert len(remote.ended) == len(names)  # none still writing into the temporary folder
    finally:
        fetcher.close()
    assert caught.value.failure_kind == "input" and "gone-c.csv" in str(caught.value) and "00000003-0000" in str(caught.value)
