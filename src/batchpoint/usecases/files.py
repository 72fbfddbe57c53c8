"""The files of a data store, as the front doors read and write them: look one up, open one to
stream it, open a writer. Paths are normalized (``storage.base.normalize_relpath``: no ``..``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from batchpoint.exceptions import StorageNotFoundError
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.usecases.services import Services

CHUNK = 1 << 20


def relpath(path: str) -> str:
    """``path`` as a path inside a data store (refused when it leaves it)."""
    return normalize_relpath(path)


def exists(sv: Services, datastore: str, path: str) -> bool:
    """Whether ``path`` is a file or a folder in ``datastore``."""
    backend = open_backend(sv.workspace.datastore_spec(datastore))
    rel = normalize_relpath(path)
    return backend.is_file(rel) or backend.is_dir(rel)


def opener(sv: Services, datastore: str) -> Callable[[str], Any]:
    """``open(rel)``: a writer of file ``rel`` (already normalized) in ``datastore`` (``write``,
    ``close``, ``abort``); the data store is looked up and its backend opened now."""
    return open_backend(sv.workspace.datastore_spec(datastore)).open_write


def read_file(sv: Services, datastore: str, path: str) -> Iterator[bytes]:
    """The bytes of file ``path`` in ``datastore``, in chunks; a missing file is a
    StorageNotFoundError (404) now, before the first chunk."""
    spec = sv.workspace.datastore_spec(datastore)
    return read_spec(spec, normalize_relpath(path))


def read_spec(spec: Any, rel: str) -> Iterator[bytes]:
    backend = open_backend(spec)
    if not backend.is_file(rel):
        raise StorageNotFoundError(f"file '{rel}' does not exist")
    handle = backend.open_read(rel)

    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    return chunks()
