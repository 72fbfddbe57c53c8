"""A job's folder: the one place that knows its layout.

=====================  ==========================================================================
``manifest.jsonl``     the job's files, one line per mini-batch as the lister hands it out, then a
                       line marking the listing complete (see :class:`Manifest`)
``done.jsonl``         one line per finished mini-batch with its counts and part keys (see :class:`DoneLog`)
``parts/<key>.csv``    the rows of one scored mini-batch (written by the engine's workers with the
                       job's output writer; synced, found and read back by ``outputs/parts.py``)
``logs/worker-<n>.log``  everything worker ``n`` printed or logged
``tmp/``                the workers' downloads of remote input files (removed when the workers end)
=====================  ==========================================================================

The folder lives on a storage backend: a :class:`LocalBackend` of ``<home>/jobs/<name>`` by
default (:meth:`JobFolder.local`), so a later engine can keep it on shared storage. The local
pool's workers write ``parts/`` and ``logs/`` directly, so :attr:`JobFolder.parts_dir` and
:attr:`JobFolder.logs_dir` need a backend with paths on this machine's disk.

Both logs are append-only JSON lines read back when a job resumes. A crash can tear the last
line; an unparsable *last* line is therefore ignored (and cut off, so the next line starts clean),
while an unparsable line anywhere else is an error naming the file and the line.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from batchpoint._internal.fsync import fsync_path
from batchpoint.engines.planning import FileRef, MiniBatch
from batchpoint.exceptions import JobError, StorageNotFoundError
from batchpoint.storage.base import StorageBackend, StorageSpec
from batchpoint.storage.local import LocalBackend


class JsonLines:
    """One append-only JSON-lines file of a job folder (thread-safe appends)."""

    def __init__(self, backend: StorageBackend, name: str) -> None:
        self.backend, self.name = backend, name
        self._lock = threading.Lock()
        self._unsynced = False  # lines appended with durable=False since the last sync()

    def where(self) -> str:
        local = self.backend.local_path(self.name)
        return f"'{local}'" if local else f"'{self.name}' in {self.backend.spec.describe()}"

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry in order (none when the file does not exist). Read to the end, a torn last
        line is cut off the file; a bad line before the last raises :class:`JobError`."""
        if not self.backend.is_file(self.name):
            return
        good_end = 0  # bytes up to the end of the last good line
        pending: tuple[int, bytes] | None = None  # (line number, raw): parsed once the next line is seen
        with self.backend.open_read(self.name) as handle:
            for number, raw in enumerate(handle, start=1):
                if pending is not None:
                    yield self._parse(*pending)
                    good_end += len(pending[1])
                pending = (number, raw) if raw.strip() else None
                if pending is None:
                    good_end += len(raw)
        if pending is None:
            return
        try:
            entry = self._parse(*pending)
        except JobError:  # the write of this line was torn by a crash: it never happened
            self._truncate(good_end)
            return
        if not pending[1].endswith(b"\n"):
            self._append(b"\n")  # complete JSON whose newline was lost: the next line must not join it
        yield entry

    def _parse(self, number: int, raw: bytes) -> dict[str, Any]:
        try:
            entry = json.loads(raw)
        except ValueError as exc:
            raise JobError(
                f"line {number} of the job's resume log {self.where()} is not valid JSON ({exc}); only a torn "
                "last line (a write cut by a crash) is ignored, so the job cannot resume from this file: invoke "
                "it again"
            ) from exc
        if not isinstance(entry, dict):
            raise JobError(f"line {number} of the job's resume log {self.where()} is not a JSON object; the job "
                           "cannot resume from this file: invoke it again")
        return entry

    def append(self, *entries: dict[str, Any], durable: bool = True) -> None:
        """Append ``entries``; with ``durable=False`` the lines reach the OS at once (they survive
        the server process dying) but the disk only at the next :meth:`sync` (group commit: the
        caller syncs before anything relies on them surviving a crash of the machine)."""
        self._append("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode(), durable)

    def _append(self, data: bytes, durable: bool = True) -> None:
        with self._lock:
            local = self._local_file()
            if local is not None:
                fd = self._append_fd(local)
                view = memoryview(data)
                while view:  # one write (a crash tears at most this line); more only if the kernel cut it short
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)  # a recorded line survives a crash of the machine too
                self._unsynced = self._unsynced or not durable
                return
            # A store without appends (object storage): rewrite the file. O(size) per append; an
            # engine that keeps job folders on shared storage should batch its lines.
            self._rewrite(self._read_all() + data)

    def sync(self) -> None:
        """Flush the lines appended with ``durable=False`` to disk (one fsync for all of them)."""
        with self._lock:
            if not self._unsynced:
                return
            fd = getattr(self, "_fd", None)
            if fd is not None:
                os.fsync(fd)
            else:
                fsync_path(self._local)
            self._unsynced = False

    def _append_fd(self, local: str) -> int:
        """The file opened for appends (``O_APPEND``), once: the manifest gets a line per mini-batch,
        and opening the file for each cost more than the write. Closed when this object goes."""
        fd = getattr(self, "_fd", None)
        if fd is None:
            fd = self._fd = os.open(local, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # not inherited (PEP 446)
            weakref.finalize(self, os.close, fd)
        return fd

    def _local_file(self) -> str | None:
        """The file's path on this machine (its folder made), worked out once: appends come once
        per mini-batch, and resolving the path each time cost more than the write."""
        if not hasattr(self, "_local"):
            local = self.backend.local_path(self.name)
            if local is not None:
                Path(local).parent.mkdir(parents=True, exist_ok=True)
            self._local = local
        return self._local

    def _truncate(self, size: int) -> None:
        with self._lock:
            local = self.backend.local_path(self.name)
            if local is not None:
                os.truncate(local, size)
            else:
                self._rewrite(self._read_all()[:size])

    def _read_all(self) -> bytes:
        if not self.backend.is_file(self.name):
            return b""
        with self.backend.open_read(self.name) as handle:
            return handle.read()

    def _rewrite(self, data: bytes) -> None:
        with self.backend.open_write(self.name) as out:
            out.write(data)


class DoneLog:
    """Finished mini-batches, appended as they finish; read back when a job resumes."""

    TOTALS = ("files_completed", "files_failed", "rows", "mini_batches_completed", "mini_batches_failed")

    def __init__(self, lines: JsonLines | Path) -> None:
        if isinstance(lines, Path):  # a bare file on this machine
            lines = JsonLines(LocalBackend(StorageSpec(kind="local", config={"path": str(lines.parent)})), lines.name)
        self.lines = lines
        self.indexes: set[int] = set()
        self.totals = dict.fromkeys(self.TOTALS, 0)
        for entry in lines.entries():
            if entry["index"] in self.indexes:
                # recorded twice (a server that stalled and the one that took its job over both
                # finished it): one mini-batch, counted once
                continue
            self.indexes.add(entry["index"])
            for k in self.totals:
                self.totals[k] += entry.get(k, 0)

    def add(self, index: int, *, durable: bool = True, **counts: Any) -> None:
        """Record finished mini-batch ``index``: its counts and ``parts``, the keys of its part files
        (the only ones the output assembles, see ``jobs/assembly.py``). ``durable=False``: on disk
        at the next ``lines.sync()`` (see :meth:`JsonLines.append`)."""
        self.lines.append({"index": index, **counts}, durable=durable)


class Manifest:
    """The job's files, recorded as they are listed, so a resumed job scores exactly these.

    One line per mini-batch, written before the mini-batch is handed to the engine::

        {"index": 0, "files": [["input_data", "folder/a.csv"], ...]}     # [input name, path in its store]

    and, when the listing ends, ``{"complete": true, "files_total": N, "mini_batches_total": M,
    "at": "<ISO time>"}``. Indexes count from 0 without gaps.
    """

    def __init__(self, lines: JsonLines) -> None:
        self.lines = lines
        self.next_index = 0  # the index of the next mini-batch to record
        self.files_recorded = 0
        self.complete: dict[str, Any] | None = None
        for entry in lines.entries():
            if entry.get("complete"):
                self.complete = entry
            else:
                self.next_index = max(self.next_index, int(entry["index"]) + 1)
                self.files_recorded += len(entry["files"])

    def replay(self) -> Iterator[MiniBatch]:
        """The recorded mini-batches, in order (read from the file, never held in memory)."""
        for entry in self.lines.entries():
            if not entry.get("complete"):
                yield MiniBatch(int(entry["index"]), tuple(FileRef(s, p) for s, p in entry["files"]))

    def add(self, batch: MiniBatch, durable: bool = True, seen: list[list[int | None]] | None = None) -> None:
        """Record ``batch``; ``seen``: each file's ``[size, modified]`` as listed (``modified`` in
        ns where the store tells it), kept so that a file changed while the job ran is named."""
        entry: dict[str, Any] = {"index": batch.index, "files": [[f.source, f.path] for f in batch.files]}
        if seen is not None:
            entry["seen"] = seen
        self.lines.append(entry, durable=durable)
        self.next_index = batch.index + 1
        self.files_recorded += len(batch.files)

    def finish(self, files_total: int, mini_batches_total: int, at: datetime) -> None:
        self.complete = {"complete": True, "files_total": files_total, "mini_batches_total": mini_batches_total,
                         "at": at.isoformat()}
        self.lines.append(self.complete)

    def completed_at(self) -> datetime | None:
        at = (self.complete or {}).get("at")
        return datetime.fromisoformat(at) if at else None


class JobFolder:
    """The layout of one job's folder over a storage backend (local by default)."""

    MANIFEST = "manifest.jsonl"
    DONE = "done.jsonl"
    PARTS = "parts"
    LOGS = "logs"
    LOG_SUFFIX = ".log"

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    @classmethod
    def local(cls, jobs_dir: Path, name: str) -> JobFolder:
        """The folder ``<jobs_dir>/<name>`` on this machine (``jobs_dir`` is ``<home>/jobs``)."""
        return cls(LocalBackend(StorageSpec(kind="local", config={"path": str(Path(jobs_dir) / name)})))

    def manifest(self) -> Manifest:
        return Manifest(JsonLines(self.backend, self.MANIFEST))

    def done_log(self) -> DoneLog:
        return DoneLog(JsonLines(self.backend, self.DONE))

    @property
    def parts_dir(self) -> str:
        return self._local(self.PARTS)

    @property
    def logs_dir(self) -> str:
        return self._local(self.LOGS)

    def _local(self, rel: str) -> str:
        path = self.backend.local_path(rel)
        if path is None:
            raise JobError(
                f"the job folder on {self.backend.spec.describe()} is not on this machine's disk, but this engine's "
                f"workers write '{rel}/' there directly; keep job folders local (<home>/jobs) for this engine")
        return path

    def log_files(self) -> list[tuple[str, int]]:
        """(name, size) of every worker log, sorted by name; none before the job's workers start."""
        try:
            infos = list(self.backend.iter_files(self.LOGS))
        except StorageNotFoundError:
            return []
        found = ((i.path.rsplit("/", 1)[-1], i.size or 0) for i in infos if i.path.count("/") == 1)
        return sorted(f for f in found if f[0].endswith(self.LOG_SUFFIX))

    def read_log(self, log_name: str, offset: int = 0, limit: int = 4 << 20) -> bytes | None:
        """Up to ``limit`` bytes of a worker log from ``offset``; None when there is no such log."""
        base = Path(log_name).name  # a bare name: never a path out of logs/
        rel = f"{self.LOGS}/{base}"
        if base in ("", ".", "..") or not self.backend.is_file(rel):
            return None
        with self.backend.open_read(rel) as handle:
            if handle.seekable():
                handle.seek(max(0, offset))
            else:
                handle.read(max(0, offset))
            return handle.read(limit)
