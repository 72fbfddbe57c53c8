"""The behaviour every storage backend shares, written once.

A backend's test module subclasses :class:`BackendConformance` (its name does not start with
``Test``, so it is not collected itself) and overrides the ``backend`` fixture with one that
returns a writable backend over an empty root. Backends with paged listings should set a small
``page_size`` on it, so the laziness test crosses page boundaries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from batchpoint.exceptions import StorageNotFoundError, UnsafeInputError
from batchpoint.storage.base import FileInfo, StorageBackend

BINARY = bytes(range(256)) * 3


def write(backend: StorageBackend, path: str, data: bytes) -> None:
    with backend.open_write(path) as f:
        f.write(data)


def read(backend: StorageBackend, path: str) -> bytes:
    with backend.open_read(path) as f:
        return f.read()


def paths(backend: StorageBackend, prefix: str = "") -> list[str]:
    return [info.path for info in backend.iter_files(prefix)]


class BackendConformance:
    @pytest.fixture
    def backend(self) -> StorageBackend:  # pragma: no cover - overridden
        raise NotImplementedError("a subclass provides a writable, empty backend")

    @pytest.fixture
    def tree(self, backend: StorageBackend) -> StorageBackend:
        write(backend, "a.txt", b"alpha")
        write(backend, "folder/b.csv", b"x,y\n1,2\n")
        write(backend, "folder/sub/c.bin", BINARY)
        write(backend, "folderx/d.txt", b"not in folder")
        write(backend, "folder2.txt", b"a sibling file named like the folder")
        return backend

    def test_write_then_read_back(self, tree: StorageBackend) -> None:
        assert read(tree, "a.txt") == b"alpha"
        assert read(tree, "folder/b.csv") == b"x,y\n1,2\n"
        assert read(tree, "folder/sub/c.bin") == BINARY

    def test_open_read_streams_in_parts(self, tree: StorageBackend) -> None:
        with tree.open_read("folder/sub/c.bin") as f:
            parts = [f.read(100), f.read(100), f.read()]
        assert b"".join(parts) == BINARY and len(parts[0]) == 100

    def test_is_file_and_is_dir(self, tree: StorageBackend) -> None:
        assert tree.is_file("a.txt") and tree.is_file("folder/sub/c.bin")
        assert not tree.is_file("folder") and not tree.is_file("missing.txt")
        assert tree.is_dir("") and tree.is_dir("folder") and tree.is_dir("folder/sub")
        assert not tree.is_dir("a.txt") and not tree.is_dir("missing") and not tree.is_dir("fold")

    def test_paths_are_normalised(self, tree: StorageBackend) -> None:
        assert tree.is_file("./folder//b.csv") and tree.is_file("folder\\b.csv")
        assert tree.is_dir("folder/")

    def test_iter_files_recursive_sorted_with_sizes(self, tree: StorageBackend) -> None:
        infos = list(tree.iter_files(""))
        names = [i.path for i in infos]
        assert names == sorted(names)
        assert names == ["a.txt", "folder/b.csv", "folder/sub/c.bin", "folder2.txt", "folderx/d.txt"]
        assert FileInfo("folder/sub/c.bin", len(BINARY)) in infos

    def test_a_jobs_listing_lists_what_iter_files_lists(self, tree: StorageBackend) -> None:
        """``iter_files_for_job`` (a job's listing: local stores walk in a process of its own) gives
        the same files, sizes and order as ``iter_files``, and refuses a missing folder the same way."""
        for prefix in ("", "folder", "folder/sub/"):
            assert list(tree.iter_files_for_job(prefix)) == list(tree.iter_files(prefix))
        with pytest.raises(StorageNotFoundError):
            list(tree.iter_files_for_job("nope"))

    def test_iter_files_of_a_folder_stops_at_its_boundary(self, tree: StorageBackend) -> None:
        assert paths(tree, "folder") == ["folder/b.csv", "folder/sub/c.bin"]
        assert paths(tree, "folder/sub/") == ["folder/sub/c.bin"]

    def test_iter_files_of_a_missing_folder(self, tree: StorageBackend) -> None:
        with pytest.raises(StorageNotFoundError):
            list(tree.iter_files("nope"))
        with pytest.raises(StorageNotFoundError):
            list(tree.iter_files("fold"))

    def test_iter_files_is_lazy(self, backend: StorageBackend) -> None:
        for name in ("a/1.txt", "a/2.txt", "b/1.txt", "c/1.txt"):
            write(backend, name, b"1")
        it = backend.iter_files("")
        assert isinstance(it, Iterator)
        assert next(it).path == "a/1.txt"
        # A file added after the listing started, in a part it has not reached yet, is seen:
        # the listing is fetched as it is consumed, not all up front.
        write(backend, "c/2.txt", b"2")
        assert [i.path for i in it] == ["a/2.txt", "b/1.txt", "c/1.txt", "c/2.txt"]

    def test_open_read_missing_or_folder(self, tree: StorageBackend) -> None:
        with pytest.raises(StorageNotFoundError):
            tree.open_read("missing.txt")
        with pytest.raises(StorageNotFoundError):
            tree.open_read("folder")

    def test_open_write_replaces(self, tree: StorageBackend) -> None:
        write(tree, "a.txt", b"replaced, and longer than before")
        assert read(tree, "a.txt") == b"replaced, and longer than before"

    def test_failed_write_keeps_the_old_file(self, tree: StorageBackend) -> None:
        with pytest.raises(RuntimeError):
            with tree.open_write("a.txt") as f:
                f.write(b"half")
                raise RuntimeError("scoring failed")
        assert read(tree, "a.txt") == b"alpha"
        with pytest.raises(RuntimeError):
            with tree.open_write("never.txt") as f:
                f.write(b"half")
                raise RuntimeError("scoring failed")
        assert not tree.is_file("never.txt")

    def test_abort_drops_what_was_written(self, tree: StorageBackend) -> None:
        f = tree.open_write("a.txt")
        f.write(b"half")
        f.abort()  # type: ignore[attr-defined]
        f = tree.open_write("aborted/new.txt")
        f.write(b"half")
        f.abort()  # type: ignore[attr-defined]
        assert read(tree, "a.txt") == b"alpha"
        assert not tree.is_file("aborted/new.txt")

    def test_empty_file_and_unusual_names(self, backend: StorageBackend) -> None:
        write(backend, "empty.txt", b"")
        write(backend, "with space/ünïcødé (1).csv", b"u")
        assert read(backend, "empty.txt") == b""
        assert read(backend, "with space/ünïcødé (1).csv") == b"u"
        assert paths(backend, "with space") == ["with space/ünïcødé (1).csv"]
        assert FileInfo("empty.txt", 0) in list(backend.iter_files(""))

    def test_get_file_and_put_file(self, backend: StorageBackend, tmp_path) -> None:
        payload = os.urandom(3 * 2**20 + 17)  # several read chunks
        src = tmp_path / "src.bin"
        src.write_bytes(payload)
        backend.put_file(str(src), "up/load.bin")
        dst = tmp_path / "dst.bin"
        backend.get_file("up/load.bin", str(dst))
        assert dst.read_bytes() == payload
        assert list(backend.iter_files("up")) == [FileInfo("up/load.bin", len(payload))]

    def test_delete_file_then_folder(self, tree: StorageBackend) -> None:
        tree.delete("a.txt")
        assert not tree.is_file("a.txt")
        tree.delete("folder")
        assert not tree.is_dir("folder") and not tree.is_file("folder/sub/c.bin")
        assert paths(tree) == ["folder2.txt", "folderx/d.txt"]  # siblings sharing the prefix stay
        tree.delete("missing/thing")  # not an error
        tree.delete("a.txt")

    def test_delete_everything(self, tree: StorageBackend) -> None:
        tree.delete("")
        assert not tree.is_file("a.txt") and not tree.is_dir("folder")

    def test_check_access(self, tree: StorageBackend) -> None:
        started = time.monotonic()
        tree.check_access()
        tree.check_access("folder")
        tree.check_access("folder/b.csv")
        with pytest.raises(StorageNotFoundError):
            tree.check_access("missing/path")
        assert time.monotonic() - started < 10

    @pytest.mark.parametrize("bad", ["../x", "folder/../../x", "a/../../../etc/passwd"])
    def test_refuses_paths_leaving_the_root(self, backend: StorageBackend, bad: str) -> None:
        calls = [
            lambda: backend.is_file(bad), lambda: backend.is_dir(bad),
            lambda: list(backend.iter_files(bad)), lambda: backend.open_read(bad),
            lambda: backend.open_write(bad), lambda: backend.delete(bad),
        ]
        for call in calls:
            with pytest.raises(UnsafeInputError):
                call()

    def test_url_for_names_the_path(self, tree: StorageBackend) -> None:
        assert "folder" in tree.url_for("folder/b.csv") and "b.csv" in tree.url_for("folder/b.csv")
