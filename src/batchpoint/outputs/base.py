"""The output-writer contract: how a job's ``output_action`` turns its scored rows into its output.

Each action (``append_row``, ``summary_only``, a format of a later issue) is one
:class:`OutputWriter`, found by its name with :func:`batchpoint.outputs.writer_for`
(``outputs/registry.py``). A writer owns the three steps of a job's rows, and nothing else:

==========================  ======================  ================================================
step                        where it runs           what the writer does
==========================  ======================  ================================================
rows → part                 a worker (any engine)   :meth:`OutputWriter.write_part`: what ``run()``
                                                    returned for one mini-batch becomes the file
                                                    ``<parts>/<key><part_suffix>``, written to a
                                                    temporary name and renamed (whole or absent);
                                                    returns the row count. A writer with
                                                    ``writes_parts = False`` (``summary_only``) only
                                                    counts: nothing is written.
                            a local pool worker     :meth:`PartFileWriter.append_part`: the same bytes
                                                    appended to the worker's :class:`Segment` of the
                                                    job (one part file per worker per job; creating
                                                    a file per mini-batch cost more than the rest of
                                                    a tiny mini-batch); returns ``(rows, offset,
                                                    length)``, which the ``done`` reply carries; a
                                                    failed append is truncated away
part durable                the server's group      ``outputs/parts.py`` :func:`sync_parts` (by name:
                            commit                  :meth:`OutputWriter.part_name`, or the segment's
                                                    file) before the done log names the part (and
                                                    where in a segment it is): a mini-batch counts
                                                    as done only once its part is on disk
parts → output              the server, finalize    :meth:`OutputWriter.assemble`: the parts the done
                                                    log names, in mini-batch order, streamed into
                                                    the one output file (``output_file_name``); a
                                                    part in a segment is streamed as its byte range
                                                    (``outputs/parts.py`` ``SegmentPart``), so a
                                                    writer's ``assemble`` sees the same streams
==========================  ======================  ================================================

Around them, job-level steps that are the same for every writer stay in ``jobs/``: which jobs'
done logs make the output and where it goes, transient retries, the partial output of a failed
or canceled job (``jobs/assembly.py``), the done log itself (``jobs/folder.py``,
``jobs/progress.py``).

A new format is one module holding its writer and one line in ``outputs/registry.py``.
This package imports only the storage layer, ``_internal`` and ``exceptions`` (an import-linter
contract keeps it so): the server imports it, and so do workers — also those of a deployment's own
environment, which run a worker-only copy of Batchpoint (``environments/worker_copy.py``: no
pydantic, so not even ``entities``; the action names match ``BatchDeploymentOutputAction``'s).
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class OutputWriter(Protocol):
    """One output action's rows → part → output."""

    #: the ``output_action`` it implements (its registry key)
    action: str
    #: whether each mini-batch leaves a part and the job an assembled output file
    writes_parts: bool
    #: the part file's suffix after its key (``.csv``)
    part_suffix: str

    def part_name(self, key: str) -> str:
        """The file name of mini-batch piece ``key``'s part."""
        ...

    def write_part(self, parts: Path, key: str, result: Any) -> int:
        """Write ``result`` (what ``run()`` returned) as ``parts/<part_name(key)>``, whole or not
        at all; return its row count. An ``OSError`` (full or read-only folder) propagates after
        the temporary file is removed."""
        ...

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        """Write the job's output file to ``out`` from its parts' streams, in the order given."""
        ...


#: a segment's name starts so (never a part key: those start with the mini-batch index's digits)
SEGMENT_PREFIX = "seg-"


def segment_name(worker_id: int | str, suffix: str) -> str:
    """A fresh segment's name, unique per worker process and job: ``seg-<worker>-<pid>-<random><suffix>``
    (a replacement worker, or the workers of a resumed job, never append to an older segment)."""
    return f"{SEGMENT_PREFIX}{worker_id}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def is_segment_name(name: str, suffix: str) -> bool:
    """Whether ``name`` is what :func:`segment_name` makes: a plain file name (no folder, no ``..``)."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(suffix)) or len(name) > 200:
        return False
    middle = name[len(SEGMENT_PREFIX):len(name) - len(suffix)] if suffix else name[len(SEGMENT_PREFIX):]
    return bool(middle) and all(c.isascii() and (c.isalnum() or c == "-") for c in middle)


class Segment:
    """One worker's part file of one job, its mini-batches' rows appended one after the other
    (:meth:`PartFileWriter.append_part`). Opened (created) at the first append; :attr:`end` is where
    the next mini-batch's rows go: bytes past it (a failed append's, which are also truncated) are
    never named by a done reply."""

    def __init__(self, folder: str | os.PathLike[str], name: str) -> None:
        self.folder, self.name = os.fspath(folder), name
        self.path = os.path.join(self.folder, name)
        self.fd: int | None = None
        self.end = 0

    def open(self) -> int:
        """Create the segment (never an existing file: a name taken already gets another random part)."""
        if self.fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            for _ in range(8):
                try:
                    try:
                        self.fd = os.open(self.path, flags, 0o644)
                    except FileNotFoundError:  # the job's parts/ not made yet
                        os.makedirs(self.folder, exist_ok=True)
                        self.fd = os.open(self.path, flags, 0o644)
                    break
                except FileExistsError:  # a worker of an earlier run of the job with this pid and random part
                    base, dot, suffix = self.name.partition(".")
                    self.name = f"{base}-{secrets.token_hex(2)}{dot}{suffix}"
                    self.path = os.path.join(self.folder, self.name)
            else:
                raise FileExistsError(f"no free segment name in {self.folder} (last tried {self.name})")
            self.end = 0
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __repr__(self) -> str:
        return f"Segment({self.path!r}, end={self.end})"


class _SegmentSink(io.RawIOBase):
    """Writes to a segment's descriptor at an explicit offset (``pwrite``): no shared file position."""

    def __init__(self, fd: int, at: int) -> None:
        super().__init__()
        self.fd, self.at = fd, at
        self.dropped = False  # a failed append: what is still buffered goes nowhere

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.dropped:
            return len(view)
        written = 0
        while written < len(view):
            written += os.pwrite(self.fd, view[written:], self.at + written)
        self.at += written
        return written


def temporary_name(key: str) -> str:
    """The name a part of mini-batch piece ``key`` is written under before it is renamed to its
    writer's :meth:`~OutputWriter.part_name` (every engine's, so the local pool finds a killed
    worker's leftovers by it: ``.<key>.tmp``)."""
    return f".{key}.tmp"


class PartFileWriter:
    """The writers that leave one part file per mini-batch: the atomic write is here, the format
    in :meth:`write_rows` and :meth:`assemble` of each subclass."""

    action: ClassVar[str]
    writes_parts: ClassVar[bool] = True
    part_suffix: ClassVar[str] = ".csv"

    def part_name(self, key: str) -> str:
        return f"{key}{self.part_suffix}"

    def write_part(self, parts: Path, key: str, result: Any) -> int:
        folder = os.fspath(parts)
        tmp, final = os.path.join(folder, temporary_name(key)), os.path.join(folder, self.part_name(key))
        try:
            try:
                out = open(tmp, "wb")
            except FileNotFoundError:  # the first part of the folder (strings, one open: a mini-batch of tiny files
                os.makedirs(folder, exist_ok=True)  # spent more in Path and mkdir than in its rows)
                out = open(tmp, "wb")
            with out:
                rows = self.write_rows(result, out)
            os.replace(tmp, final)  # whole or absent; the server syncs it to disk before recording it done
            return rows
        except BaseException:
            _remove(tmp)
            raise

    def append_part(self, segment: Segment, result: Any) -> tuple[int, int, int]:
        """Append ``result``'s rows (the bytes :meth:`write_part` would write for it) at the end of
        ``segment`` (made at the first append); return ``(rows, offset, length)``: where they are.
        Written to the kernel before this returns (no fsync: the server's group commit syncs the
        segment). On any failure the segment is truncated back to where this append began, and the
        exception propagates: a failed mini-batch leaves no bytes behind."""
        fd = segment.open()
        start = segment.end
        sink = _SegmentSink(fd, start)
        out = io.BufferedWriter(sink, buffer_size=1 << 16)
        try:
            rows = self.write_rows(result, out)
            out.close()  # flushed: in the kernel before the worker says done
        except BaseException:
            sink.dropped = True
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the original failure is the one raised
                pass
            try:
                os.ftruncate(fd, start)
            except OSError:  # the next append writes over those bytes; none is ever named
                pass
            raise
        segment.end = sink.at
        return rows, start, sink.at - start

    def write_rows(self, result: Any, out: IO[bytes]) -> int:
        """Write ``result``'s rows to the part file ``out``; return how many."""
        raise NotImplementedError

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(action={self.action!r})"


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
