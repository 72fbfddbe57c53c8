"""``AZUREML_BI_OUTPUT_PATH``: the folder a scoring script writes its own output files to.

Every scoring script of a job sees ``AZUREML_BI_OUTPUT_PATH`` — one folder per job, shared by all
its workers, as on Azure (where "all the batch executors have write access to this path at the
same time": a script names its files so that workers do not collide, e.g. after the input file).
It lives in the job's folder on the server (``<home>/jobs/<job>/outputs/score/``); at finalize
every file under it is uploaded, with its relative path, into the job's ``score`` output location
on whatever data store that is (local, Azure Blob, ADLS, S3) — for ``summary_only`` jobs that is
the whole output; for ``append_row`` jobs the predictions file is written after them (it wins a
name clash). ``job download --output-name score`` then brings them with the rest of the output.

A resumed job keeps what its scripts wrote before the crash (the folder is the job's).

On an engine whose nodes share no disk with the server (Ray, ``engines/ray_engine.py``) each worker
has a folder of its own as ``AZUREML_BI_OUTPUT_PATH``, and what its script wrote there leaves the
node after each mini-batch, before the mini-batch counts as done: when the ``score`` output's data
store is remote (:func:`remote_target`: Azure Blob, ADLS Gen2, S3) the worker uploads each new or
changed file straight to its place in the output location, with the job's delegated, writable
credential for that store (so nothing is left for finalize, and such a file is in the output from
that moment, also when the job later fails or is canceled, as on Azure where the folder is the
mounted output); with a local output store the files come back with the worker's reply and the
engine writes them into this job's folder, which :func:`upload_bi_output` handles as above. Either
way a file written twice under one name (a retried mini-batch, two workers) is the last one written,
as on Azure.
"""

from __future__ import annotations

from pathlib import Path

from batchpoint.exceptions import PlatformError, StorageError
from batchpoint.jobs.output_target import job_output
from batchpoint.outputs.parts import remote_writes
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

VARIABLE = "AZUREML_BI_OUTPUT_PATH"


def bi_output_dir(jobs_dir: Path, job_name: str) -> Path:
    return Path(jobs_dir) / job_name / "outputs" / "score"


def environment(jobs_dir: Path, job_name: str) -> dict[str, str]:
    """The variable the workers get (the folder is made here, before any worker starts)."""
    folder = bi_output_dir(jobs_dir, job_name)
    folder.mkdir(parents=True, exist_ok=True)
    return {VARIABLE: str(folder)}


def remote_target(ws: WorkspaceService, job: JobRow) -> tuple[StorageSpec, str] | None:
    """(the data store's spec, the folder on it) of the job's ``score`` output when that store is one
    the nodes of a distributed engine reach and write to themselves; None for a local store."""
    target = job_output(job)
    if target is None:
        return None
    spec = ws.datastore_spec(target.datastore)
    return (spec, target.folder) if remote_writes(spec.kind) else None


def upload_bi_output(ws: WorkspaceService, job: JobRow) -> int:
    """Copy every file the scripts wrote into the job's ``score`` output location; returns the
    count. A failed write fails the job with a :class:`PlatformError` naming the file and cause."""
    folder = bi_output_dir(ws.settings.jobs_dir, job.name)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        return 0
    target = job_output(job)
    if target is None:
        raise PlatformError(f"job {job.name} has no 'score' output to write the files its scoring script wrote to "
                            f"{VARIABLE} into; they are kept in {folder}")
    backend = open_backend(ws.datastore_spec(target.datastore))
    for path in files:
        rel = path.relative_to(folder).as_posix()
        try:
            backend.put_file(str(path), target.at(rel))
        except (OSError, StorageError) as exc:
            where = target.shown(rel)
            raise PlatformError(f"could not write '{rel}', which the scoring script wrote to {VARIABLE}, to the job's "
                                f"output {where} (data store '{target.datastore}'): {exc}; the file is kept in {folder}",
                                details={"location": where}) from exc
    return len(files)
