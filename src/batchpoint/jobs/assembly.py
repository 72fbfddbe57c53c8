"""Which part files make a job's output, in which order — every input row exactly once.

A mini-batch counts as done only when its result is durable: the worker writes its part to a
temporary name and renames it to ``parts/<key>.csv`` before it reports success, and the server's
group commit (``jobs/progress.py``) syncs the part to disk and then appends the mini-batch to
``done.jsonl`` (fsynced), naming the keys of its parts
(``"parts": ["00000007-0000"]``, or the succeeding pieces of a split one). Assembly reads *only*
the done log: a part file on disk that the log does not name is from an attempt that was
superseded — the whole mini-batch whose worker timed out after writing it and that was then split
into pieces, a mini-batch rescored after the server died before recording it — and is never
assembled. Order: by mini-batch index, then part key (pieces in file order), so two runs of one
job over the same files write the same file.

Where the parts are: in the job folder (``parts/<key>.csv``) when the server's workers wrote them
(the local pool), or when the output data store is local; on the **output data store** under
:func:`staging_prefix` (``azureml/<job>/parts/<key>.csv``, Batchpoint's own area of that store,
never inside the output folder that ``job download`` lists) when a job's output store is remote
(Azure Blob, ADLS Gen2, S3) and the engine's nodes wrote them there themselves (the Ray engine:
its nodes share no disk with the server). The location follows from the job (its output data
store and its name), so a resumed job, its partial output and a rerun that merges it find them:
for each part the done log names, the job folder's file when there is one, else the store's. The
store's parts are fetched a few ahead (:data:`FETCH_AHEAD`, in parallel, each into a temporary
file) and written in order (:func:`part_streams`): never held in memory, never all on disk. After a job is Completed
with nothing failed, :func:`drop_staged_parts` removes its staging prefix; a Failed or Canceled
job, or one with failed files (which a ``rerun --failed-only`` merges), keeps it.

A rerun of the failed files (``jobs/rerun.py``) merges: its output is the first job's assembled
parts, then its own (:func:`output_parts` follows ``settings.rerun.merge_with`` back to the first
job). A canceled job's finished parts are assembled too and labelled partial
(:func:`write_partial_output`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batchpoint.exceptions import BatchpointError, PlatformError, StorageNotFoundError
from batchpoint.jobs.folder import JobFolder, JsonLines
from batchpoint.jobs.states import JobStatus
from batchpoint.storage.base import StorageBackend, StorageSpec
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

#: the marker written beside a canceled job's output
PARTIAL_MARKER = "_PARTIAL.json"
#: the output data stores whose parts an engine's nodes may write themselves (reachable from them)
REMOTE_KINDS = ("azure_blob", "azure_data_lake_gen2", "s3")
#: the key of the output store among the storage specs handed to workers that write parts there
PARTS_SOURCE = "batchpoint:parts"
#: how many of the store's parts assembly fetches ahead of the one it writes (one GET each, in parallel)
FETCH_AHEAD = 8


def staging_prefix(name: str) -> str:
    """Where job ``name``'s parts are on its output data store when its nodes write them there."""
    return f"azureml/{name}/parts"


@dataclass(frozen=True)
class StagedParts:
    """A job's staging area on its (remote) output data store: ``<prefix>/<key>.csv``."""

    datastore: str
    spec: StorageSpec
    prefix: str

    def describe(self) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{self.prefix}"


def staged_parts(ws: WorkspaceService, job: JobRow) -> StagedParts | None:
    """The staging area of ``job`` on its output data store, when that store is a remote kind
    (nodes reach it); None for a local store or a job without a predictions output."""
    from batchpoint.jobs.output import output_location  # output imports this module

    output = (job.outputs or {}).get("score")
    if not output or (job.settings or {}).get("output_action", "append_row") != "append_row":
        return None
    datastore, _ = output_location(output)
    spec = ws.datastore_spec(datastore)
    return StagedParts(datastore, spec, staging_prefix(job.name)) if spec.kind in REMOTE_KINDS else None


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


def finished_parts(folder: JobFolder, staged: StagedParts | None = None) -> list[Path | RemotePart]:
    """The parts of the job's finished mini-batches, as its done log names them, in order: the job
    folder's file of each key, or (``staged``, when it has none) the output store's."""
    from batchpoint.storage.registry import open_backend

    parts_dir = Path(folder.parts_dir)
    backend = open_backend(staged.spec) if staged is not None else None
    named: dict[int, list[str] | None] = {}
    for entry in JsonLines(folder.backend, folder.DONE).entries():
        named[int(entry["index"])] = entry.get("parts")  # the last record of an index wins
    found: list[Path] = []
    for index in sorted(named):
        keys = named[index]
        if keys is None:  # a done log from before records named their parts: the index's parts on disk
            found.extend(sorted(parts_dir.glob(f"{index:08d}-*.csv")))
            continue
        for key in sorted(keys):
            part = parts_dir / f"{key}.csv"
            if backend is not None and staged is not None and not part.is_file():
                found.append(RemotePart(backend, f"{staged.prefix}/{key}.csv", index))
                continue
            if not part.is_file():
                raise PlatformError(f"the part {part} of finished mini-batch {index} is missing from the job folder "
                                    "(removed by hand?); invoke the job again", details={"part": str(part)})
            found.append(part)
    return found


def part_streams(parts: list[Path | RemotePart], ahead: int = FETCH_AHEAD) -> Iterator[IO[bytes]]:
    """Each part opened for reading, in the order given. The output store's parts are downloaded
    up to ``ahead`` at a time in the background, each into a temporary file removed once read, so
    writing the output costs about one round trip per ``ahead`` parts, not one per part."""
    with tempfile.TemporaryDirectory(prefix="batchpoint-assembly-") as tmp, \
            ThreadPoolExecutor(max(1, ahead), thread_name_prefix="batchpoint-assembly") as pool:
        window: deque[tuple[Path | RemotePart, Future[str] | None]] = deque()

        def opened(part: Path | RemotePart, fetched: Future[str] | None) -> IO[bytes]:
            if fetched is None:
                return part.open("rb")
            local = fetched.result()
            src = open(local, "rb")
            os.unlink(local)  # gone from the folder at once; its space goes when it is closed
            return src

        for i, part in enumerate(parts):
            remote = isinstance(part, RemotePart)
            window.append((part, pool.submit(part.fetch, os.path.join(tmp, f"{i}.csv")) if remote else None))
            if len(window) > ahead:
                yield opened(*window.popleft())
        while window:
            yield opened(*window.popleft())


def merge_chain(ws: WorkspaceService, job: JobRow) -> list[JobRow]:
    """The jobs whose parts make ``job``'s output: the first job of a rerun chain first."""
    chain, seen = [job], {job.name}
    while True:
        base = ((chain[-1].settings or {}).get("rerun") or {}).get("merge_with")
        if not base or base in seen:
            break
        seen.add(base)
        chain.append(ws.store.get_job(base))
    return chain[::-1]


def output_parts(ws: WorkspaceService, job: JobRow) -> list[Path | RemotePart]:
    return [part for row in merge_chain(ws, job)
            for part in finished_parts(JobFolder.local(ws.settings.jobs_dir, row.name), staged_parts(ws, row))]


def drop_staged_parts(ws: WorkspaceService, name: str) -> None:
    """Remove a Completed job's staging area on its output store once its output is written, when
    nothing failed (a job with failed files keeps it: ``rerun --failed-only`` merges its parts).
    Never raises: a staging area left behind costs storage, not correctness."""
    job = ws.store.get_job(name)
    staged = staged_parts(ws, job)
    if staged is None or job.files_failed or job.mini_batches_failed:
        return
    from batchpoint.storage.registry import open_backend

    try:
        open_backend(staged.spec).delete(staged.prefix)
    except (BatchpointError, OSError) as exc:
        log.warning("job %s: could not remove its staged parts %s: %s", name, staged.describe(), exc)


def write_partial_output(ws: WorkspaceService, name: str) -> bool:
    """For a job that was canceled while it ran: write the rows of its finished mini-batches to its
    output, with a ``_PARTIAL.json`` marker beside them, and mark the output ``partial`` (shown by
    ``job show``; ``job download`` says so). Returns whether it did. Never raises: the job is
    Canceled whatever happens here."""
    job = ws.store.get_job(name)
    if (job.status != JobStatus.CANCELED.value or not job.mini_batches_completed  # nothing finished: nothing to keep
            or (job.settings or {}).get("output_action") != "append_row"):
        return False
    return _write_partial(ws, job)


def keep_partial_output(ws: WorkspaceService, name: str) -> bool:
    """For a job that *failed* while it was scoring (``Running``: error_threshold passed, a
    mini-batch's platform retries spent, workers dying in init()): the same partial output as a
    canceled job's, when it finished at least one mini-batch. A job that failed in ``Finalizing``
    (its output being written) is left as it is. Never raises."""
    try:
        job = ws.store.get_job(name)
        if (job.status != JobStatus.FAILED.value or not job.mini_batches_completed
                or (job.settings or {}).get("output_action") != "append_row"):
            return False
        statuses = [e.status for e in ws.store.list_job_events(name, 0, 10_000, types=("status",))]
        if len(statuses) < 2 or statuses[-2] != JobStatus.RUNNING.value:
            return False
    except Exception:  # noqa: BLE001 - the job's own failure is what matters
        log.warning("job %s: could not check whether to keep a partial output", name, exc_info=True)
        return False
    return _write_partial(ws, job)


def _write_partial(ws: WorkspaceService, job: JobRow) -> bool:
    from batchpoint.jobs.output import write_output  # output imports this module

    name = job.name
    try:
        write_output(ws, job, Path(JobFolder.local(ws.settings.jobs_dir, name).parts_dir))
        _write_marker(ws, job)
        outputs = dict(job.outputs or {})
        outputs["score"] = {**outputs["score"], "partial": True}
        ws.store.update_job(name, outputs=outputs)
        return True
    except (BatchpointError, OSError) as exc:
        log.warning("job %s: could not write its partial output: %s", name, exc)
        return False


def _write_marker(ws: WorkspaceService, job: JobRow) -> None:
    from batchpoint.jobs.output import output_location
    from batchpoint.storage.registry import open_backend

    datastore, folder = output_location(job.outputs["score"])
    backend = open_backend(ws.datastore_spec(datastore))
    marker: dict[str, Any] = {
        "partial": True, "job": job.name, "status": job.status,
        "reason": (f"the job {'was canceled' if job.status == JobStatus.CANCELED.value else 'failed'}; the "
                   f"output holds only the mini-batches finished before it "
                   f"{'was canceled' if job.status == JobStatus.CANCELED.value else 'failed'}"),
        "mini_batches_completed": job.mini_batches_completed, "mini_batches_total": job.mini_batches_total,
        "files_completed": job.files_completed, "files_total": job.files_total, "rows": job.rows,
    }
    target = f"{folder}/{PARTIAL_MARKER}" if folder else PARTIAL_MARKER
    with backend.open_write(target) as out:
        out.write(json.dumps(marker, indent=2).encode() + b"\n")
