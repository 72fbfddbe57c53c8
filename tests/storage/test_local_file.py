"""``LocalBackend.local_file``: a worker's one call per input file (issue 24, tiny files). It must say
exactly what ``local_path`` followed by an ``is_file`` check says — the same path, the same
refusals — whether the file's folder was seen before (its one-``lstat`` path) or not."""

from __future__ import annotations

import os

import pytest

from batchpoint.exceptions import StorageNotFoundError, UnsafeInputError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.local import LocalBackend


@pytest.fixture
def store(tmp_path):
    root, outside = tmp_path / "store", tmp_path / "outside"
    (root / "a" / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "f.csv").write_text("x\n")
    (root / "top.csv").write_text("t\n")
    (outside / "g.csv").write_text("secret\n")
    (root / "out").symlink_to(outside)  # a folder link out of the store
    (root / "a" / "link.csv").symlink_to(outside / "g.csv")  # a file link out of it
    (root / "a" / "inlink.csv").symlink_to(root / "a" / "f.csv")  # a link inside it
    return root, outside


def _old(backend: LocalBackend, path: str) -> str | type:
    """What a worker did before: ``local_path``, then ``os.path.isfile``."""
    try:
        local = backend.local_path(path)
    except UnsafeInputError:
        return UnsafeInputError
    return local if local is not None and os.path.isfile(local) else StorageNotFoundError


def _new(backend: LocalBackend, path: str) -> str | type:
    try:
        return backend.local_file(path)
    except (UnsafeInputError, StorageNotFoundError) as exc:
        return type(exc)


PATHS = ["a/f.csv", "top.csv", "a/link.csv", "a/inlink.csv", "a/sub", "a/nope.csv", "out/g.csv", "/a/f.csv",
         "a//f.csv", "a/./f.csv", "a/../a/f.csv", "a%2e%2e/f.csv", "a\\f.csv", "a", "", "nofolder/x.csv"]


@pytest.mark.parametrize("path", PATHS)
def test_local_file_says_what_local_path_and_is_file_say(store, path):
    root, _ = store
    backend = LocalBackend(StorageSpec("local", {"path": str(root)}))
    first = _new(backend, path)
    assert first == _old(backend, path)
    # asked again (the folder now known: the fast path), and after every other path was asked
    assert _new(backend, path) == first
    for other in PATHS:
        _new(backend, other)
    assert _new(backend, path) == first


def test_a_file_replaced_by_a_link_out_of_the_store_is_refused_after_its_folder_was_seen(store):
    root, outside = store
    backend = LocalBackend(StorageSpec("local", {"path": str(root)}))
    assert backend.local_file("a/f.csv") == str(root / "a" / "f.csv")  # the folder is known now
    (root / "a" / "f.csv").unlink()
    (root / "a" / "f.csv").symlink_to(outside / "g.csv")
    with pytest.raises(UnsafeInputError):
        backend.local_file("a/f.csv")
    (root / "a" / "f.csv").unlink()
    with pytest.raises(StorageNotFoundError):  # gone: listed, then removed
        backend.local_file("a/f.csv")
    (root / "a" / "f.csv").mkdir()
    with pytest.raises(StorageNotFoundError):  # a folder now: no file to read
        backend.local_file("a/f.csv")
