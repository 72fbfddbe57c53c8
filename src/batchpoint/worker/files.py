"""A worker's file steps: fetching a mini-batch's input files, writing its part.

Fetching: local stores hand over their path (checked to exist); remote ones are downloaded to a
per-worker temporary folder (in the job folder's ``tmp/``, see :func:`.protocol.scratch_root`) that is
emptied after each mini-batch. A file that is gone is an
``input`` failure; any other fault (storage unreachable, throttled past its retries, credential
refused, the temporary folder's disk full) is ``platform``.

Writing, on the local pool (``segments`` in the job config): each worker appends every
mini-batch's rows to one part file of its own per job, its *segment* (``parts/seg-<worker>-<pid>-
<random>.csv``, :func:`append_part`), and its ``done`` reply says where they are (file, offset,
length); a failed append is truncated away, and a killed worker's torn tail is named by no reply.
Creating a file costs far more than appending to one (a new inode in the job's fresh ``parts/``:
~0.4 ms of kernel CPU on the benchmark's VM, more than the rest of a tiny mini-batch's work).

Writing, elsewhere (Ray's actors, a writer that cannot append): the job's output writer
(``outputs/``, by its ``output_action``) writes a part to ``parts/.<key>.tmp`` and renames it to
the name it gives it (``part_name``: ``parts/<key>.csv`` for append_row; the Ray engine and its
actors use the same names) before the worker reports the mini-batch done (so it is there whole or not at all, whatever kills the
worker); on any failure the temporary file is removed. The worker does not fsync either: the server
syncs the parts of a group of finished mini-batches at once before it records them as done
(``jobs/progress.py``, ``outputs/parts.py sync_parts``), one journal commit for many parts instead
of two fsyncs per mini-batch in every worker. A write that fails with an ``OSError`` (ENOSPC, EROFS, …)
is ``platform``; a result that cannot be written as rows is the user's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from batchpoint.exceptions import InputError, StorageNotFoundError
from batchpoint.outputs import OutputWriter, writer_for
from batchpoint.outputs.base import Segment
from batchpoint.storage.registry import open_backend
from batchpoint.worker.errors import StepFailure
from batchpoint.worker.protocol import spec_from_dict


#: how many files of a remote store one worker downloads at once
FETCH_CONCURRENCY = 8


class Fetcher:
    def __init__(self, sources: dict[str, Any], scratch: str | None = None) -> None:
        """``scratch``: the folder to make this worker's temporary folder in (the system's by default)."""
        self.use(sources)
        if scratch is not None:
            os.makedirs(scratch, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="batchpoint-worker-", dir=scratch)
        self.downloaded = False  # whether the temporary folder holds anything to clear
        self.pool: ThreadPoolExecutor | None = None  # concurrent downloads, made when first needed

    def use(self, sources: dict[str, Any]) -> None:
        """Read with ``sources`` (storage spec dicts) from now on (renewed credentials)."""
        self.specs = {key: spec_from_dict(spec) for key, spec in sources.items()}
        self.backends = {key: open_backend(spec) for key, spec in self.specs.items()}
        self.remote = any(backend.kind != "local" for backend in self.backends.values())

    def fetch(self, files: list[dict[str, str]], key: str) -> list[str]:
        """The local paths of ``files``, in order. Files of a remote store are downloaded
        :data:`FETCH_CONCURRENCY` at a time (a mini-batch of small blobs waits on round trips,
        not bandwidth); every download has ended before this returns or raises, and the failure
        raised is the first file's in the mini-batch's order."""
        remote = sum(1 for ref in files if self._is_remote(ref["source"])) if self.remote else 0
        if remote < 2:
            return [self._fetch_one(i, ref["source"], ref["path"], key) for i, ref in enumerate(files)]
        if self.pool is None:
            self.pool = ThreadPoolExecutor(FETCH_CONCURRENCY, thread_name_prefix="batchpoint-fetch")
        futures = [self.pool.submit(self._fetch_one, i, ref["source"], ref["path"], key) for i, ref in enumerate(files)]
        paths: list[str] = []
        failure: BaseException | None = None
        for future in futures:  # all of them: none still writes into the temporary folder afterwards
            try:
                paths.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the first one, in file order, is raised
                failure = failure or exc
        if failure is not None:
            raise failure
        return paths

    def _is_remote(self, source: str) -> bool:
        backend = self.backends.get(source)
        return backend is not None and backend.kind != "local"

    def _fetch_one(self, i: int, source: str, path: str, key: str) -> str:
        try:
            backend = self.backends[source]
            local_file = getattr(backend, "local_file", None)  # a local store: the path and its check in one
            if local_file is not None:
                return str(local_file(path))
            local = backend.local_path(path)
            if local is not None:
                if not os.path.isfile(local):
                    raise StorageNotFoundError(f"{self._where(source, path)} does not exist")
                return local
            folder = Path(self.tmp) / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            self.downloaded = True
            local = str(folder / path.rsplit("/", 1)[-1])
            backend.get_file(path, local)
            return local
        except StorageNotFoundError as exc:
            raise StepFailure("input", f"{self._where(source, path)} was not found when mini-batch {key} fetched it "
                                       "(it was listed, then removed or renamed): it is not scored", exc) from exc
        except InputError as exc:  # e.g. a link out of the data store
            raise StepFailure("input", f"{self._where(source, path)} cannot be read: {exc}", exc) from exc
        except Exception as exc:  # noqa: BLE001 - any other fault is the platform's
            raise StepFailure("platform", f"could not fetch {self._where(source, path)} for mini-batch {key}: "
                                          f"{type(exc).__name__}: {exc}", exc) from exc

    def _where(self, source: str, path: str) -> str:
        spec = self.specs.get(source)
        return f"file '{path}' of input '{source}' ({spec.describe() if spec else 'an input this worker does not know'})"

    def clear(self) -> None:
        """Empty the temporary folder of what the last mini-batch downloaded."""
        if not self.downloaded:
            return
        self.downloaded = False
        for child in Path(self.tmp).iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_part(parts: Path, key: str, result: Any, writer: OutputWriter | None = None) -> int:
    """Write ``result`` as mini-batch piece ``key``'s part with the job's output ``writer``
    (``outputs/``; ``append_row``'s ``parts/<key>.csv`` by default); return the row count. Leaves no
    temporary file. A disk fault is ``platform``; a result that cannot be written as rows is the user's."""
    writer = writer or writer_for(None)
    try:
        return writer.write_part(parts, key, result)
    except OSError as exc:
        final = parts / writer.part_name(key)
        cause = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        raise StepFailure("platform", f"could not write the rows of mini-batch {key} to '{final}': {cause}; "
                                      f"free space in (or fix) the job folder {parts.parent}", exc) from exc


def append_part(segment: Segment, key: str, result: Any, writer: OutputWriter) -> tuple[int, int, int]:
    """Append ``result`` as mini-batch piece ``key``'s rows to this worker's ``segment`` of the job
    (``outputs/base.py``: ``PartFileWriter.append_part``); return ``(rows, offset, length)``. A failed
    append is truncated away. A disk fault is ``platform``; a result that cannot be written as rows
    is the user's."""
    try:
        return writer.append_part(segment, result)  # type: ignore[attr-defined]
    except OSError as exc:
        cause = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        raise StepFailure("platform", f"could not write the rows of mini-batch {key} to '{segment.path}': {cause}; "
                                      f"free space in (or fix) the job folder {Path(segment.folder).parent}",
                          exc) from exc
