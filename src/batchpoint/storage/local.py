"""A folder on this machine as a data store (the embedded default ``workspaceblobstore``)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from batchpoint.exceptions import StorageNotFoundError, UnsafeInputError
from batchpoint.storage import local_walk
from batchpoint.storage.local_links import NEEDS_NORMALISING as _NEEDS_NORMALISING
from batchpoint.storage.local_links import inside, open_checked_folder, path_outside
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath



class _AtomicWriter:
    """Writes to a temporary file beside the target and renames it into place on close. An aborted
    write (``close(commit=False)``, or an exception in a ``with`` block) leaves nothing behind: the
    temporary file is removed, and so are the folders this writer made, when they are still empty."""

    def __init__(self, target: Path) -> None:
        self._made: list[Path] = []
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            self._made.append(folder)
            folder = folder.parent
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        self._file = os.fdopen(fd, "wb")
        self._target = target

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def close(self, *, commit: bool = True) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()  # the last flush: a full disk fails here
        except OSError:
            self._discard()
            raise
        if commit:
            os.replace(self._tmp, self._target)
        else:
            self._discard()

    def _discard(self) -> None:
        """Remove the temporary file, and the folders this writer made while they are empty."""
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: another writer uses it
                break

    def abort(self) -> None:
        self.close(commit=False)

    def __enter__(self) -> _AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)


def _relpath(root: str, path: str) -> str:
    """:func:`normalize_relpath` of a path in the local folder ``root``, where a backslash counts as
    ``/`` (the contract of every backend) — unless, on POSIX, a file or folder of that name with
    the backslash as a character exists: ``a\\b.csv`` is one file there, and is listed as such
    (read as ``a/b.csv``, which does not exist, it failed as "listed, then removed"). The same
    refusals apply either way (``..`` segments however spelled, NUL)."""
    rel = normalize_relpath(path)
    if os.sep != "/" or "\\" not in (path or ""):
        return rel
    literal = "/".join(p for p in path.split("/") if p not in ("", "."))
    return literal if os.path.lexists(os.path.join(root, literal)) else rel


class LocalBackend(StorageBackend):
    kind = "local"

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        self.root = Path(spec.config["path"]).resolve()
        self._root = str(self.root)
        self._real_dirs: dict[str, str] = {}  # folder -> its real path (a worker asks for 10,000s of files)
        self._inside_dirs: dict[str, str] = {}  # a relative folder -> its real path, seen inside the store

    def _real(self, full: str) -> str:
        """``os.path.realpath(full)``, with the real path of its folder remembered: resolving every
        component of every file again cost a worker more than scoring a small file."""
        folder, _, name = full.rpartition(os.sep)
        real_folder = self._real_dirs.get(folder)
        if real_folder is None:
            real_folder = os.path.realpath(folder)
            if len(self._real_dirs) < 4096 and os.path.isdir(real_folder):  # a folder not made yet: asked again
                self._real_dirs[folder] = real_folder
        real = os.path.join(real_folder, name)
        return os.path.realpath(real) if os.path.islink(real) else real

    def _abs(self, path: str) -> Path:
        rel = _relpath(self._root, path)
        if not rel:
            return self.root
        full = os.path.join(self._root, rel)
        resolved = self._real(full)
        if not inside(resolved, self._root):
            raise UnsafeInputError(path_outside(path), details={"path": str(path)[:200]})
        return Path(full)

    def local_file(self, path: str) -> str:
        """The path on this machine of the *file* ``path``: :meth:`local_path` and an ``is_file``
        check in one. A worker asks for 10,000s of files, and the two cost more than scoring a small
        file, so a plain relative path (nothing to normalise) in a folder already seen to be inside
        the store is one ``lstat``; anything else (a link, a folder not seen yet, a path to
        normalise) takes :meth:`local_path`'s checks. :class:`StorageNotFoundError` when it is not
        a file (gone, a folder), :class:`UnsafeInputError` as :meth:`local_path`."""
        if os.sep == "/" and path and not _NEEDS_NORMALISING.search(path):
            folder, _, name = path.rpartition("/")
            real_folder = self._inside_dirs.get(folder)
            if real_folder is not None:
                try:
                    mode = os.lstat(f"{real_folder}/{name}").st_mode
                except OSError:
                    mode = 0
                if stat.S_ISREG(mode):
                    return f"{self._root}/{path}"
        full = str(self._abs(path))
        if not os.path.isfile(full):
            raise StorageNotFoundError(f"file '{path}' does not exist in {self.spec.describe()}")
        if os.sep == "/" and path and not _NEEDS_NORMALISING.search(path) and len(self._inside_dirs) < 4096:
            folder = path.rpartition("/")[0]
            real_folder = os.path.realpath(f"{self._root}/{folder}" if folder else self._root)
            if inside(real_folder, self._root):
                self._inside_dirs[folder] = real_folder  # a folder of the store, inside it
        return full

    def open_folder(self, full: str) -> int:
        """An ``O_PATH`` descriptor of the folder of ``full`` (a path :meth:`local_file` returned).
        The folder's real path is read from the *open* descriptor (``/proc/self/fd``), so what is
        then done through it (``os.link(name, …, src_dir_fd=fd, follow_symlinks=False)``, an
        ``O_NOFOLLOW`` open) stays inside the store even when a folder was swapped for a symbolic
        link after :meth:`local_file` remembered its real path. :class:`UnsafeInputError` when it
        lies outside the store, :class:`StorageNotFoundError` when there is no such folder; the
        caller closes the descriptor."""
        folder = os.path.dirname(full)
        checked = open_checked_folder(folder, self._root)
        if isinstance(checked, int):
            return checked
        shown = os.path.relpath(folder, self._root) if folder.startswith(self._root) else "?"
        if checked is None:
            raise StorageNotFoundError(f"folder '{shown}' does not exist in {self.spec.describe()}")
        raise UnsafeInputError(checked, details={"path": shown[:200]})

    def is_file(self, path: str) -> bool:
        return self._abs(path).is_file()

    def is_dir(self, path: str) -> bool:
        return self._abs(path).is_dir()

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        return self._infos(local_walk.walk, prefix)

    def iter_files_for_job(self, prefix: str) -> Iterator[FileInfo]:
        """:meth:`iter_files`, walked by a process of its own after the first files
        (``storage/local_walk.py walk_for_job``): the ``stat`` of every file off the server's GIL."""
        return self._infos(local_walk.walk_for_job, prefix)

    def _infos(self, walk: Callable[[str, str], Iterator[tuple[str, int, int]]], prefix: str) -> Iterator[FileInfo]:
        for path, size, modified in walk(self._root, self._folder(prefix)):  # the folder checked at the first file
            yield FileInfo(path if os.sep == "/" else path.replace(os.sep, "/"), size, modified)

    def _folder(self, prefix: str) -> str:
        start = self._abs(prefix)
        if not start.is_dir():
            raise StorageNotFoundError(f"folder '{prefix}' does not exist in {self.spec.describe()}")
        return str(start)

    def open_read(self, path: str) -> IO[bytes]:
        full = self._abs(path)
        if not full.is_file():
            raise StorageNotFoundError(f"file '{path}' does not exist in {self.spec.describe()}")
        return open(full, "rb")

    def local_path(self, path: str) -> str | None:
        return str(self._abs(path))

    def open_write(self, path: str) -> IO[bytes]:
        return _AtomicWriter(self._abs(path))  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        full = self._abs(path)
        if full.is_dir():
            shutil.rmtree(full, ignore_errors=True)
        elif full.exists():
            full.unlink()

    def check_access(self, path: str = "") -> None:
        if not self.root.is_dir():
            raise StorageNotFoundError(f"the local data store folder '{self.root}' does not exist")
        super().check_access(path)

    def url_for(self, path: str) -> str:
        return self._abs(path).as_uri()
