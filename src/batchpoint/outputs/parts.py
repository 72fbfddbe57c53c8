"""Where a job's parts are, making them durable, and reading them back in order.

A part is one scored mini-batch piece's rows, named ``<key><suffix>`` by the job's writer
(``00000007-0000.csv``), or a byte range of a worker's segment (the local pool; the done log's
``"segments": {key: [file, offset, length]}``). The workers write them to the job folder's ``parts/`` (the local pool, and
the Ray engine with a local output store), or — when a job's output store is remote (Azure Blob,
ADLS Gen2, S3) and the engine's nodes share no disk with the server (Ray) — to its **staging area**
on that store, :func:`staging_prefix` (``azureml/<job>/parts/``: Batchpoint's own area of the store,
never inside the output folder ``job download`` lists).

* :func:`sync_parts`: the server's group commit (``jobs/progress.py``) makes the parts of a group
  of finished mini-batches durable at once, before the done log names them (workers do not fsync).
* :func:`finished_parts`: the parts of a job's done-log entries (only those: a part on disk the log
  does not name is from a superseded attempt), in mini-batch order, then part key — the byte range
  of a worker's *segment* the entry names for the key (:class:`SegmentPart`: the local pool's
  workers append every mini-batch to one part file each per job, ``seg-<worker>-<pid>-<random>.csv``;
  bytes of a segment no entry names — a failed or killed attempt's — are never read), else the job
  folder's file of each key (Ray's parts, and entries of versions before segments), else the
  staging area's.
* :func:`part_streams`: each part opened, in order; the store's fetched :data:`FETCH_AHEAD` at a
  time in the background (one temporary file each, removed once read): never all in memory or on disk.
"""

from __future__ import annotations

import ctypes
import io
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batchpoint._internal.fsync import fsync_path
from batchpoint.exceptions import PlatformError, StorageNotFoundError
from batchpoint.outputs.base import OutputWriter
from batchpoint.storage.base import StorageBackend, StorageSpec
from batchpoint.storage.registry import find_kind, open_backend

#: the key of the output store among the storage specs handed to workers that write parts there
PARTS_SOURCE = "batchpoint:parts"
#: how many of the store's parts assembly fetches ahead of the one it writes (one GET each, in parallel)
FETCH_AHEAD = 8
#: up to this many parts are synced one by one; a bigger group with one syncfs(2) of their filesystem
SYNC_EACH_UP_TO = 4
_syncfs: Any = None


def remote_writes(kind: str) -> bool:
    """Whether an engine's nodes may write a job's parts (and its scripts' files) to a store of
    ``kind`` themselves: its descriptor's ``capabilities.remote_writes`` (Azure Blob, ADLS Gen2, S3)."""
    found = find_kind(kind)
    return found is not None and found.capabilities.remote_writes


def staging_prefix(name: str) -> str:
    """Where job ``name``'s parts are on its output data store when its nodes write them there."""
    return f"azureml/{name}/parts"


@dataclass(frozen=True)
class StagedParts:
    """A job's staging area on its (remote) output data store: ``<prefix>/<part name>``."""

    datastore: str
    spec: StorageSpec
    prefix: str

    def describe(self) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{self.prefix}"


@dataclass(frozen=True)
class RemotePart:
    """A finished part on the output data store; :meth:`open` streams it."""

    backend: StorageBackend
    path: str
    index: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def open(self, mode: str = "rb") -> IO[bytes]:
        try:
            return self.backend.open_read(self.path)
        except StorageNotFoundError as exc:
            raise self._missing() from exc

    def fetch(self, local: str) -> str:
        """Download the part to ``local``; ``local``."""
        try:
            self.backend.get_file(self.path, local)
        except StorageNotFoundError as exc:
            raise self._missing() from exc
        return local

    def _missing(self) -> PlatformError:
        return PlatformError(f"the part {self} of finished mini-batch {self.index} is missing from the job's "
                             "staging area (removed by hand?); invoke the job again", details={"part": str(self)})

    def __str__(self) -> str:
        return self.backend.url_for(self.path)


class _Range(io.RawIOBase):
    """``length`` bytes of an open file from ``offset`` on (``pread``), then end of file."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self.fd, self.at, self.left = fd, offset, length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1), never more than is left: one ``pread``
        of just that many (a tiny part is not read through a buffer of the caller's chunk size)."""
        want = self.left if size is None or size < 0 else min(size, self.left)
        if want <= 0:
            return b""
        data = os.pread(self.fd, want, self.at)
        if not data:
            raise PlatformError(f"a segment of the job's parts ended {self.left} bytes early (cut by hand?); "
                                "invoke the job again")
        self.at += len(data)
        self.left -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line (with its ``\n``), read a few KiB at a time (a writer may iterate a part's lines)."""
        limit = self.left if size is None or size < 0 else min(size, self.left)
        line = b""
        while len(line) < limit:
            chunk = os.pread(self.fd, min(8192, limit - len(line)), self.at)
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                chunk = chunk[:end + 1]
            line += chunk
            self.at += len(chunk)
            self.left -= len(chunk)
            if end >= 0:
                break
        return line

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


@dataclass(frozen=True)
class SegmentPart:
    """A finished mini-batch piece's rows inside a segment (one worker's part file of the job, see
    ``outputs/base.py`` :class:`~batchpoint.outputs.base.Segment`): :meth:`open` reads exactly
    ``length`` bytes from ``offset`` — as a part file of its own would read."""

    path: Path
    offset: int
    length: int
    index: int

    @property
    def name(self) -> str:
        return self.path.name

    def open(self, mode: str = "rb") -> IO[bytes]:
        try:  # never through a link (a fenced worker writes the folder)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError as exc:
            raise _missing_part(self.path, self.index) from exc
        return _Range(fd, self.offset, self.length)  # type: ignore[return-value]  # reads as a file does

    def __str__(self) -> str:
        return f"{self.path}[{self.offset}:{self.offset + self.length}]"


def _missing_part(part: Path, index: int) -> PlatformError:
    return PlatformError(f"the part {part} of finished mini-batch {index} is missing from the job folder "
                         "(removed by hand?); invoke the job again", details={"part": str(part)})


def segment_of(entry: dict[str, Any], key: str) -> tuple[str, int, int] | None:
    """Where done-log ``entry`` says piece ``key``'s rows are: ``(segment file, offset, length)``,
    or None for a part file of its own (entries of older versions, Ray's parts)."""
    found = (entry.get("segments") or {}).get(key)
    if found is None:
        return None
    name, offset, length = found
    return str(name), int(offset), int(length)


def finished_parts(entries: Iterable[dict[str, Any]], parts_dir: str | Path, writer: OutputWriter,
                   staged: StagedParts | None = None) -> list[Path | RemotePart | SegmentPart]:
    """The parts the done-log ``entries`` name, in order: by mini-batch index (the last entry of
    an index wins), then part key. A key the entry places in a segment (``"segments": {key:
    [file, offset, length]}``, the local pool's workers): that byte range of ``parts_dir/<file>``
    (:class:`SegmentPart`); any other key: the file ``parts_dir/<writer.part_name(key)>``, or (with
    ``staged``, when there is none) the staging area's. An entry from before entries named their
    parts: that index's ``<index>-*<part_suffix>`` files on disk. None for a writer that writes no
    parts (``summary_only``: its entries name the keys of parts it never wrote)."""
    if not writer.writes_parts:
        return []
    parts_dir = Path(parts_dir)
    backend = open_backend(staged.spec) if staged is not None else None
    named: dict[int, dict[str, Any]] = {}
    for entry in entries:
        named[int(entry["index"])] = entry
    found: list[Path | RemotePart | SegmentPart] = []
    sizes: dict[str, int] = {}  # a segment's size, looked up once
    for index in sorted(named):
        keys = named[index].get("parts")
        if keys is None:
            found.extend(sorted(parts_dir.glob(f"{index:08d}-*{writer.part_suffix}")))
            continue
        for key in sorted(keys):
            segment = segment_of(named[index], key)
            if segment is not None:
                found.append(_segment_part(parts_dir, segment, index, sizes))
                continue
            part = parts_dir / writer.part_name(key)
            if backend is not None and staged is not None and not part.is_file():
                found.append(RemotePart(backend, f"{staged.prefix}/{writer.part_name(key)}", index))
                continue
            if not part.is_file():
                raise _missing_part(part, index)
            found.append(part)
    return found


def _segment_part(parts_dir: Path, segment: tuple[str, int, int], index: int, sizes: dict[str, int]) -> SegmentPart:
    name, offset, length = segment
    path = parts_dir / name
    if name not in sizes:
        if "/" in name or name in ("", ".", ".."):
            raise PlatformError(f"the done log of the job names the segment '{name}' for mini-batch {index}, which "
                                "is not a file name; the done log was edited by hand?", details={"part": name})
        try:
            sizes[name] = os.stat(path, follow_symlinks=False).st_size
        except FileNotFoundError as exc:
            raise _missing_part(path, index) from exc
    if offset < 0 or length < 0 or offset + length > sizes[name]:
        raise PlatformError(f"the part of finished mini-batch {index} ({length} bytes from {offset} in {path}) is "
                            f"missing from the job folder: the file holds {sizes[name]} bytes (cut by hand?); invoke "
                            "the job again", details={"part": str(path)})
    return SegmentPart(path, offset, length, index)


def part_streams(parts: list[Path | RemotePart | SegmentPart], ahead: int = FETCH_AHEAD) -> Iterator[IO[bytes]]:
    """Each part opened for reading, in the order given. The output store's parts are downloaded
    up to ``ahead`` at a time in the background, each into a temporary file removed once read, so
    writing the output costs about one round trip per ``ahead`` parts, not one per part."""
    with tempfile.TemporaryDirectory(prefix="batchpoint-assembly-") as tmp, \
            ThreadPoolExecutor(max(1, ahead), thread_name_prefix="batchpoint-assembly") as pool:
        window: deque[tuple[Path | RemotePart | SegmentPart, Future[str] | None]] = deque()

        def opened(part: Path | RemotePart | SegmentPart, fetched: Future[str] | None) -> IO[bytes]:
            if fetched is None:
                return part.open("rb")
            local = fetched.result()
            src = open(local, "rb")
            os.unlink(local)  # gone from the folder at once; its space goes when it is closed
            return src

        for i, part in enumerate(parts):
            remote = isinstance(part, RemotePart)
            window.append((part, pool.submit(part.fetch, os.path.join(tmp, f"{i}.part")) if remote else None))
            if len(window) > ahead:
                yield opened(*window.popleft())
        while window:
            yield opened(*window.popleft())


def sync_parts(parts_dir: str, names: list[str]) -> None:
    """Make the parts ``names`` (files in ``parts_dir``, written and renamed — or segments appended
    to — by workers without an fsync of their own) durable, with their folder's entries: the group
    commit of parts. A few are
    fsynced one by one; more with one ``syncfs(2)`` of their filesystem (Linux), which costs one
    journal commit however many parts the group holds. Names that are not on this disk (a remote
    store's part, already durable; a writer that wrote none) are skipped."""
    if not names or not os.path.isdir(parts_dir):
        return
    if len(names) > SYNC_EACH_UP_TO and _sync_filesystem(parts_dir):
        return
    for name in names:
        try:
            fsync_path(os.path.join(parts_dir, name))
        except FileNotFoundError:
            continue
    fsync_path(parts_dir)  # the renames


def _sync_filesystem(path: str) -> bool:
    """``syncfs(2)`` of the filesystem holding ``path``; False where there is none (not Linux)."""
    global _syncfs
    if _syncfs is None:
        try:
            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if not _syncfs:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return True
    finally:
        os.close(fd)
