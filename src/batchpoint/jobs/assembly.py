"""A job's output file from its parts — every input row exactly once — and the partial output of a
job that failed or was canceled.

The format is the job's output writer's (``outputs/``, by ``output_action``: how rows become a
part, how parts become the output file, and that a ``summary_only`` job has neither); this module
holds what is the same for every writer: which parts, from which jobs, where the output goes,
retries, and what a failure says.

A mini-batch counts as done only when its result is durable: the worker writes its part to a
temporary name and renames it, or (the local pool) appends it to its segment, one part file per
worker per job (``outputs/base.py``), before it reports success, and the server's group commit
(``jobs/progress.py``) syncs the part (or segment) to disk and then appends the mini-batch to
``done.jsonl`` (fsynced), naming the keys of its parts (``"parts": ["00000007-0000"]``, or the
succeeding pieces of a split one) and, for appended ones, where they are (``"segments":
{"00000007-0000": ["seg-0-4242-1f2e3d4c.csv", 1024, 96]}``: file, offset, length). Assembly
reads *only* the done log (:func:`finished_parts`): a part file (or bytes of a segment) on disk
that the log does not name is from an attempt that was superseded — the whole
mini-batch whose worker timed out after writing it and that was then split into pieces, a
mini-batch rescored after the server died before recording it — and is never assembled. Order: by
mini-batch index, then part key (pieces in file order), so two runs of one job over the same files
write the same file.

Where the parts are: in the job folder (``parts/``) when the server's workers wrote them (the local
pool), or when the output data store is local; on the **output data store**'s staging area
(``outputs/parts.py`` :func:`staging_prefix`, ``azureml/<job>/parts/``) when a job's output store is
remote and the engine's nodes wrote them there themselves (Ray). For each part the done log names:
the job folder's file when there is one, else the store's, fetched a few ahead
(:func:`part_streams`). After a job is Completed with nothing failed, :func:`drop_staged_parts`
removes its staging area; a Failed or Canceled job, or one with failed files (which a
``rerun --failed-only`` merges), keeps it.

A rerun of the failed files (``jobs/rerun.py``) merges: its output is the first job's assembled
parts, then its own (:func:`output_parts` follows its plan's ``rerun.merge_with`` back to the first
job). A canceled job's finished parts are assembled too and labelled partial
(:func:`write_partial_output`), as are a job's that failed while scoring (:func:`keep_partial_output`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from batchpoint.exceptions import BatchpointError, PlatformError, StorageError, TransientStorageError
from batchpoint.jobs.folder import JobFolder, JsonLines
from batchpoint.jobs.output_target import job_output
from batchpoint.jobs.plan import JobPlan
from batchpoint.jobs.states import JobStatus
from batchpoint.outputs import OutputWriter, writer_for
from batchpoint.outputs import parts as _parts
from batchpoint.outputs.parts import (  # noqa: F401 - their names here too, for older imports
    FETCH_AHEAD, PARTS_SOURCE, RemotePart, SegmentPart, StagedParts, part_streams, remote_writes, staging_prefix,
)
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

#: the marker written beside a canceled or failed job's output
PARTIAL_MARKER = "_PARTIAL.json"
#: pauses between whole tries of an output write that failed transiently (the store unreachable)
OUTPUT_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def job_writer(job: JobRow) -> OutputWriter:
    """The output writer of the output action ``job``'s plan pins (``jobs/plan.py``; a job stored
    before plans: its settings' ``output_action``, which its plan is read from)."""
    return writer_for(JobPlan.from_row(job).output.action)


def staged_parts(ws: WorkspaceService, job: JobRow) -> StagedParts | None:
    """The staging area of ``job`` on its output data store, when that store is a remote kind
    (nodes reach it); None for a local store or a job whose writer writes no parts."""
    target = job_output(job)
    if target is None or not job_writer(job).writes_parts:
        return None
    spec = ws.datastore_spec(target.datastore)
    return StagedParts(target.datastore, spec, staging_prefix(job.name)) if remote_writes(spec.kind) else None


def finished_parts(folder: JobFolder, staged: StagedParts | None = None,
                   writer: OutputWriter | None = None) -> list[Path | RemotePart | SegmentPart]:
    """The parts of the job's finished mini-batches, as its done log names them, in order: the byte
    range of a worker's segment the entry names for a key, else the job folder's file of the key,
    or (``staged``, when it has none) the output store's."""
    return _parts.finished_parts(JsonLines(folder.backend, folder.DONE).entries(), folder.parts_dir,
                                 writer or writer_for(None), staged)


def merge_chain(ws: WorkspaceService, job: JobRow) -> list[JobRow]:
    """The jobs whose parts make ``job``'s output: the first job of a rerun chain first."""
    chain, seen = [job], {job.name}
    while True:
        rerun = JobPlan.from_row(chain[-1]).rerun  # the plan's chain (jobs/plan.py RerunPlan)
        base = rerun.merge_with if rerun is not None else None
        if not base or base in seen:
            break
        seen.add(base)
        chain.append(ws.store.get_job(base))
    return chain[::-1]


def output_parts(ws: WorkspaceService, job: JobRow) -> list[Path | RemotePart | SegmentPart]:
    return [part for row in merge_chain(ws, job)
            for part in finished_parts(JobFolder.local(ws.settings.jobs_dir, row.name), staged_parts(ws, row),
                                       job_writer(row))]


def write_output(ws: WorkspaceService, job: JobRow, parts_dir: Path) -> None:
    """Assemble the parts into the output file with the job's writer (nothing for a writer that
    writes no parts). A transient failure (the store unreachable, 5xx, throttled) writes the whole
    file again, with pauses, for ``jobs.output_retry_s`` (120 s, about as long as a mini-batch's
    input reads ride out an outage: docs/faults.md) after the first failure; a write that still
    fails, or fails otherwise (the store full, read-only), fails the job with a
    :class:`PlatformError` naming the location, the cause, where the scored parts are kept, and
    how to finish the job without scoring again (``job rerun``)."""
    writer, target = job_writer(job), job_output(job)
    if not writer.writes_parts or target is None:
        return
    backend = open_backend(ws.datastore_spec(target.datastore))
    budget = ws.settings.jobs.output_retry_s
    first_failure: float | None = None
    drop_stale_temporaries(backend, target.folder, job.name)
    for attempt in range(1_000_000):
        parts = output_parts(ws, job)  # the done log's parts only, in order
        try:
            with backend.open_write(target.at(target.file_name or "predictions.csv")) as out:
                writer.assemble(part_streams(parts), out)  # the store's parts fetched a few ahead, in order
            return
        except TransientStorageError as exc:
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            pause = OUTPUT_PAUSES_S[min(attempt, len(OUTPUT_PAUSES_S) - 1)]
            if now + pause - first_failure > budget:
                raise _output_failed(ws, job, backend, parts, parts_dir, str(exc), now - first_failure) from exc
            log.warning("job %s: writing its output failed (%s); writing it again in %.0f s", job.name, exc, pause)
            time.sleep(pause)
        except (OSError, StorageError) as exc:
            cause = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _output_failed(ws, job, backend, parts, parts_dir, cause, None) from exc


def drop_stale_temporaries(backend: Any, folder: str, job_name: str) -> int:
    """Remove the half-written ``.tmp-*`` files a server killed while it wrote this job's output
    left in the output folder (a local store writes a temporary file, then renames it). Only this
    job writes there (overlaps are refused, its reruns come after it), one file at a time, so any
    such file is a leftover. Returns how many went; never raises."""
    local = backend.local_path(folder or "")
    if not local or not os.path.isdir(local):
        return 0
    dropped = 0
    try:
        with os.scandir(local) as entries:
            for entry in entries:
                if entry.name.startswith(".tmp-") and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    dropped += 1
    except OSError as exc:
        log.warning("job %s: could not remove the half-written files in %s: %s", job_name, local, exc)
    if dropped:
        log.warning("job %s: removed %d half-written file(s) (.tmp-*) from its output folder %s, left by a server "
                    "that stopped while it wrote them", job_name, dropped, local)
    return dropped


def _output_failed(ws: WorkspaceService, job: JobRow, backend: Any, parts: list[Any], parts_dir: Path,
                   cause: str, tried_s: float | None) -> PlatformError:
    """The job's failure when its output could not be written: where, why, for how long, where its
    scored parts are (only the locations that hold some), and how to finish it."""
    target = job_output(job)
    assert target is not None and target.file_name is not None
    where = target.shown(target.file_name)
    staged = staged_parts(ws, job)
    remote = any(isinstance(p, RemotePart) for p in parts)
    local = any(not isinstance(p, RemotePart) for p in parts) or not parts
    kept = " and ".join(([str(parts_dir)] if local else []) + ([staged.describe()] if remote and staged else []))
    tried = f", still failing after {tried_s:.0f} s of retries" if tried_s is not None else ""
    return PlatformError(
        f"could not write the job's output {where} (data store '{target.datastore}', {backend.spec.describe()}): "
        f"{cause}{tried}; the scored parts are kept in {kept}. Once the store takes writes again (free space "
        f"there, make it writable or reachable), finish the job without scoring again: batchpoint job rerun "
        f"--name {job.name} (it writes {where}); or invoke again with another output location (--output-path)",
        details={"location": where, "parts": kept})


def drop_staged_parts(ws: WorkspaceService, name: str) -> None:
    """Remove a Completed job's staging area on its output store once its output is written, when
    nothing failed (a job with failed files keeps it: ``rerun --failed-only`` merges its parts).
    Never raises: a staging area left behind costs storage, not correctness."""
    job = ws.store.get_job(name)
    staged = staged_parts(ws, job)
    if staged is None or job.files_failed or job.mini_batches_failed:
        return
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
            or not _writes_parts(job)):
        return False
    return _write_partial(ws, job)


def keep_partial_output(ws: WorkspaceService, name: str) -> bool:
    """For a job that *failed* while it was scoring (``Running``: error_threshold passed, a
    mini-batch's platform retries spent, workers dying in init()): the same partial output as a
    canceled job's, when it finished at least one mini-batch. A job that failed in ``Finalizing``
    (its output being written) is left as it is. Never raises."""
    try:
        job = ws.store.get_job(name)
        if job.status != JobStatus.FAILED.value or not job.mini_batches_completed or not _writes_parts(job):
            return False
        statuses = [e.status for e in ws.store.list_job_events(name, 0, 10_000, types=("status",))]
        if len(statuses) < 2 or statuses[-2] != JobStatus.RUNNING.value:
            return False
    except Exception:  # noqa: BLE001 - the job's own failure is what matters
        log.warning("job %s: could not check whether to keep a partial output", name, exc_info=True)
        return False
    return _write_partial(ws, job)


def _writes_parts(job: JobRow) -> bool:
    """Whether the job's writer leaves parts to keep (an unknown action: none, and no partial output)."""
    try:
        return job_writer(job).writes_parts
    except BatchpointError:
        return False


def _write_partial(ws: WorkspaceService, job: JobRow) -> bool:
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
    target = job_output(job)
    assert target is not None
    backend = open_backend(ws.datastore_spec(target.datastore))
    canceled = job.status == JobStatus.CANCELED.value
    marker: dict[str, Any] = {
        "partial": True, "job": job.name, "status": job.status,
        "reason": (f"the job {'was canceled' if canceled else 'failed'}; the output holds only the mini-batches "
                   f"finished before it {'was canceled' if canceled else 'failed'}"),
        "mini_batches_completed": job.mini_batches_completed, "mini_batches_total": job.mini_batches_total,
        "files_completed": job.files_completed, "files_total": job.files_total, "rows": job.rows,
    }
    with backend.open_write(target.at(PARTIAL_MARKER)) as out:
        out.write(json.dumps(marker, indent=2).encode() + b"\n")
