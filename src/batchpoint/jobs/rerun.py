"""Rerun a finished job: a new job over its files — all of them, or only those that did not succeed.

``batchpoint job rerun --name <job> --failed-only`` (SDK ``ml_client.jobs.rerun(name,
failed_only=True)``, REST ``POST /jobs/<name>/rerun`` with ``{"failed_only": true}``):

* **which files**: the first job's manifest (the files it listed, as it listed them). With
  ``failed_only``: the files of every mini-batch its done log does not hold (never scored, because
  the job failed or was canceled first) and the files its failure records name (scored and
  failed: the user's code raised, the file could not be read, the timeout passed). A Completed
  job that had no failure has nothing to rerun (409).
* **how**: a new :class:`~batchpoint.jobs.plan.JobPlan` from the first job's: its inputs (as
  its invoke pinned them, read with the caller's identity), mini-batch size, retry policy and
  limits, on the deployment *as it is now* (its current model, code, environment and compute,
  pinned again: a rerun usually follows a fix). The new job's manifest is written before it is
  queued, so it scores exactly these files and never lists its inputs.
* **its output**: its own default location (``azureml/<new job>/score/<file name>``). With
  ``failed_only`` it is *merged*: the first job's rows (its finished parts, in its order), then the
  rerun's rows, into one predictions file holding every file's rows once
  (``jobs/assembly.py``). The first job, its parts and its own output are never changed.
* **finishing a job that failed writing its output** (Failed in ``Finalizing`` after every
  mini-batch finished: its output store unreachable, full or read-only): the rerun scores nothing
  (with ``failed_only``, only the files the first job had failed), merges the first job's kept
  parts and writes them to **the first job's output location** — the overlap check lets that
  job's reruns write there (:func:`failed_writing_output`, the plan's ``rerun.finishes``).

The chain (which job a rerun reruns, whose parts its output merges, whether it finishes that job)
is the new plan's ``rerun`` (:class:`~batchpoint.jobs.plan.RerunPlan`), which assembly and the
overlap check read; the job's ``settings.rerun`` shows clients the same values.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint._internal.ids import new_job_name
from batchpoint.engines.planning import FileRef, MiniBatch, plan_minibatches
from batchpoint.entities import BatchDeploymentOutputAction
from batchpoint.exceptions import ConflictError, ValidationError
from batchpoint.jobs import lifecycle
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.output import check_output_location, output_location
from batchpoint.jobs.plan import EnginePlan, IdentityPlan, JobPlan, RerunPlan, thawed
from batchpoint.jobs.states import TERMINAL, JobStatus
from batchpoint.jobs.submit import JOB_NAME, check_system_area, identity_for, pin_engine, pin_environment, pin_scorer
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

__all__ = ["rerun_job", "rerun_files"]

FINISHED = {s.value for s in TERMINAL}


def rerun_files(ws: WorkspaceService, first: JobRow, failed_only: bool) -> Iterator[FileRef]:
    """The files the rerun scores, in the first job's order (read from its folder, never all in memory)."""
    folder = JobFolder.local(ws.settings.jobs_dir, first.name)
    manifest = folder.manifest()
    if manifest.complete is None:
        raise ConflictError(f"job '{first.name}' stopped before it finished listing its files, so which files it "
                            f"would have scored is not known; invoke the endpoint again with the same inputs instead")
    done = folder.done_log().indexes if failed_only else set()
    failed: set[tuple[int, str]] = set()
    if failed_only:
        failed = {(f.mini_batch, f.file) for f in ws.store.list_failures(first.name, limit=10_000_000,
                                                                         charged_only=True) if f.file}
    for batch in manifest.replay():
        for ref in batch.files:
            if batch.index not in done or (batch.index, ref.path) in failed:
                yield ref


def rerun_job(ws: WorkspaceService, name: str, *, failed_only: bool, created_by: str | None,
              assignments: list[Any], job_name: str | None = None) -> JobRow:
    """Queue the rerun of finished job ``name`` (see the module docstring); returns the new job."""
    store = ws.store
    first = store.get_job(name)
    if first.status not in FINISHED:
        raise ConflictError(f"job '{name}' is {first.status}: only a finished job (Completed, Failed or Canceled) can "
                            f"be rerun; wait for it to end (batchpoint job stream -n {name}) or cancel it")
    new_name = job_name or new_job_name()
    if not JOB_NAME.match(new_name):
        raise ValidationError(f"job name '{new_name}' is not valid: letters, digits, '-' and '_' (up to 128)")
    deployment = store.get_deployment(first.endpoint_name, first.deployment_name)
    old = JobPlan.from_row(first)
    engine = pin_engine(ws, deployment.spec)
    _check_inputs(ws, first.name, old, engine, created_by, assignments)
    settings = dict(first.settings or {})
    finishing = failed_writing_output(ws, first)
    if finishing:  # its output goes where the first job's would have, from its kept parts (and any rescored)
        output = dict(first.outputs["score"])
        datastore, out_folder = check_output_location(
            ws, output, created_by, assignments, is_default=_is_default_output(ws, first),
            allow_jobs=frozenset(j.name for j in ws.store.jobs_writing_under(*output_location(output), limit=100)
                                 if j.name == name or _reruns(j, name)))
    else:
        output = {"type": "uri_folder", "file_name": old.output.file_name,
                  "path": f"azureml://datastores/{ws.default_datastore_name()}/paths/azureml/{new_name}/score"}
        datastore, out_folder = check_output_location(ws, output, created_by, assignments, is_default=True)
    folder = JobFolder.local(ws.settings.jobs_dir, new_name)
    if folder.backend.is_file(folder.MANIFEST):
        raise ConflictError(f"a job named '{new_name}' already exists; job names are unique")
    # a job that failed writing its output scored every file: only its failed files (--failed-only) are
    # scored again, and its kept parts are assembled with theirs
    scored = rerun_files(ws, first, True) if finishing else rerun_files(ws, first, failed_only)
    files, batches = _write_manifest(folder, scored if failed_only or not finishing else iter(()),
                                     old.mini_batch_size, finish_empty=finishing)
    if not files and not finishing:
        _remove(ws, new_name)
        what = "no file that failed or was left unscored" if failed_only else "no files"
        raise ConflictError(f"job '{name}' ({first.status}) has {what}: there is nothing to rerun")
    rerun = RerunPlan(of=name, failed_only=failed_only, files=files,
                      merge_with=name if failed_only or finishing else None, finishes=finishing)
    settings["rerun"] = rerun.view()  # shown to clients; the chain is read from the plan
    plan = replace(old, rerun=rerun, scorer=pin_scorer(ws, deployment.spec), environment=pin_environment(ws, deployment.spec),
                   engine=engine, identity=IdentityPlan(created_by, engine.compute.name if engine.compute else None),
                   output=replace(old.output, path=output["path"], datastore=datastore, folder=out_folder,
                                  file_name=output.get("file_name") or old.output.file_name))
    message = f"rerun of job '{name}' ({files} file(s) in {batches} mini-batch(es))"
    if finishing:
        message = (f"finishing job '{name}', which failed writing its output: its scored parts, "
                   f"{f'and {files} failed file(s) scored again, ' if files else ''}assembled into {output['path']}")
    try:
        return lifecycle.create(
            store, new_name, message=message,
            endpoint_name=first.endpoint_name, deployment_name=first.deployment_name, inputs=first.inputs,
            outputs={"score": output}, settings=settings, plan=plan.to_json(), created_by=created_by,
            output_datastore=datastore, output_folder=out_folder)
    except BaseException:
        _remove(ws, new_name)
        raise


def _check_inputs(ws: WorkspaceService, name: str, plan: JobPlan, engine: EnginePlan, created_by: str | None,
                  assignments: list[Any]) -> None:
    """The caller may read the first job's inputs (the rerun reads them with the caller's identity)."""
    identity = identity_for(ws, engine, created_by, assignments)
    for item in plan.inputs:
        if item.pin is None:
            raise ConflictError(f"job '{name}' was invoked before inputs were pinned (input '{item.key}'); invoke "
                                "the endpoint again instead")
        pin = thawed(item.pin)
        if not pin.get("asset"):  # the upload area and jobs' area, as at invoke (issue 18 §4)
            check_system_area(ws, pin.get("datastore"), pin["path"], created_by, assignments)
        ws.resolver.from_pin(pin, identity, item.path)


def failed_writing_output(ws: WorkspaceService, job: JobRow) -> bool:
    """Whether ``job`` failed while writing its output (``Finalizing``, e.g. the output store
    unreachable) after finishing every mini-batch: a rerun then finishes it from its kept parts."""
    if job.status != JobStatus.FAILED.value or JobPlan.from_row(job).output.action != BatchDeploymentOutputAction.APPEND_ROW:
        return False
    statuses = [e.status for e in ws.store.list_job_events(job.name, 0, 100_000, types=("status",))]
    if len(statuses) < 2 or statuses[-2] != JobStatus.FINALIZING.value:
        return False
    folder = JobFolder.local(ws.settings.jobs_dir, job.name)
    manifest = folder.manifest()
    return manifest.complete is not None and set(range(manifest.next_index)) <= folder.done_log().indexes


def _reruns(job: JobRow, name: str) -> bool:
    """Whether ``job`` is a rerun of job ``name`` (its plan's rerun chain)."""
    rerun = JobPlan.from_row(job).rerun
    return rerun is not None and rerun.of == name


def _is_default_output(ws: WorkspaceService, job: JobRow) -> bool:
    """Whether ``job``'s output is its default location (every invoker's to write)."""
    return (job.output_datastore, job.output_folder) == (ws.default_datastore_name(), f"azureml/{job.name}/score")


def _write_manifest(folder: JobFolder, files: Iterator[FileRef], size: int,
                    finish_empty: bool = False) -> tuple[int, int]:
    """The rerun's manifest, complete before the job exists: (files, mini-batches). An empty one is
    written complete only with ``finish_empty`` (a rerun that only assembles kept parts)."""
    manifest = folder.manifest()
    batch: MiniBatch | None = None
    for batch in plan_minibatches(files, size):
        manifest.add(batch)
    if batch is None:
        if finish_empty:
            manifest.finish(0, 0, utcnow())
        return 0, 0
    manifest.finish(manifest.files_recorded, manifest.next_index, utcnow())
    return manifest.files_recorded, manifest.next_index


def _remove(ws: WorkspaceService, name: str) -> None:
    shutil.rmtree(Path(ws.settings.jobs_dir) / name, ignore_errors=True)

