"""Run one job: rebuild its inputs from what the invoke pinned, list files (in the background,
recorded in the job's manifest), score mini-batches on the engine, record progress, write the
output, and finish with a status that carries the root cause.

The job's folder (``jobs/folder.py``: manifest, done log, parts, logs) lets a job whose server
died resume where it stopped: it scores exactly the files of its manifest and skips the
mini-batches its done log lists as finished.

What the job runs is its :class:`~batchpoint.jobs.plan.JobPlan`, pinned when it was created: the
runner reads no deployment, endpoint or compute row (a job stored before plans is the exception:
its environment and compute are pinned from its deployment once, on its first run here).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from batchpoint.engines.base import Engine, engine_for
from batchpoint.engines.planning import EngineJob
from batchpoint.environments import prepare_environment
from batchpoint.exceptions import BatchpointError, UserCodeError
from batchpoint.identity.delegation import WorkerCredentials
from batchpoint.jobs import bi_output
from batchpoint.jobs.errors_file import partial_errors_file, write_errors_file
from batchpoint.jobs.assembly import (
    PARTS_SOURCE, drop_staged_parts, keep_partial_output, staged_parts, write_partial_output,
)
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.lifecycle import MetadataUnwritable, fail, phase, record_with_retries, transition
from batchpoint.jobs.listing import Lister
from batchpoint.jobs.observers import observed
from batchpoint.jobs.output import write_output
from batchpoint.jobs.plan import JobPlan, code_hash, thawed
from batchpoint.jobs.progress import Progress
from batchpoint.jobs.states import JobStatus
from batchpoint.jobs.submit import identity_for, pin_engine, pin_environment
from batchpoint.storage.base import StorageSpec
from batchpoint.store.tables import JobRow
from batchpoint.uri.resolve import ResolvedInput
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

T = TypeVar("T")


def warm_compute(plan: JobPlan) -> dict[str, Any] | None:
    """The job's compute as warm workers read it (``EngineJob.warm_compute``): its name, its
    ``min_instances`` and the deployment's workers per instance; None without a compute."""
    compute = plan.engine.compute if plan.engine is not None else None
    if compute is None:
        return None
    per_instance = max(1, plan.limits.workers // max(1, plan.limits.instance_count))
    return {"name": compute.name, "min_instances": int(compute.spec.get("min_instances") or 0),
            "per_instance": per_instance}


class JobRunner:
    def __init__(self, workspace: WorkspaceService) -> None:
        self.ws = workspace
        self.store = workspace.store

    def engine(self, plan: JobPlan) -> Engine:
        """The engine of the job's pinned compute (the local pool without one)."""
        compute = plan.engine.compute if plan.engine is not None else None
        return engine_for(None if compute is None else
                          self.ws.engine_compute(compute.name, thawed(compute.spec), compute.secret))

    def plan(self, job: JobRow) -> JobPlan:
        """The job's plan. A job stored before plans has its environment and compute pinned here,
        from its deployment as it is now (read once), and the plan written back with the job."""
        plan = JobPlan.from_row(job)
        if plan.pinned:
            return plan
        spec = self.store.get_deployment(job.endpoint_name, job.deployment_name).spec
        engine = pin_engine(self.ws, spec)
        plan = replace(plan, environment=pin_environment(self.ws, spec), engine=engine,
                       identity=replace(plan.identity, compute=engine.compute.name if engine.compute else None))
        self._record(f"the plan of job {job.name}", lambda: self.store.update_job(job.name, plan=plan.to_json()))
        log.info("job %s: stored before job plans; its environment and compute are pinned now", job.name)
        return plan

    def run(self, name: str, stop: threading.Event) -> None:
        """Run job ``name`` to its end and record it. Never raises: an end that the metadata database
        will not take (full, read-only) is retried for ``jobs.record_retry_s``, then logged, and the
        job — left active, its heartbeat no longer renewed — is resumed by this server's dispatcher
        (``Dispatcher.recover``) once the database takes writes again."""
        try:
            self._run_and_record(name, stop)
        except MetadataUnwritable as exc:
            log.error("job %s: %s; it is resumed from its finished mini-batches once the database takes writes "
                      "again", name, exc)
        except Exception:  # noqa: BLE001 - a job thread never dies silently
            log.exception("job %s: its end could not be recorded; it is resumed once its heartbeat is stale", name)

    def _run_and_record(self, name: str, stop: threading.Event) -> None:
        budget = self.ws.settings.jobs.record_retry_s
        job = record_with_retries(f"the start of job {name}", lambda: self.store.get_job(name), budget, stop)
        try:
            self._run(job, stop)
        except MetadataUnwritable:
            raise
        except UserCodeError as exc:
            self._fail(name, str(exc), {"code": "UserError", "message": str(exc), **exc.details})
        except BatchpointError as exc:
            self._fail(name, str(exc), {"code": exc.code, "message": str(exc), **exc.details})
        except Exception as exc:  # noqa: BLE001 - a platform bug must still end the job clearly
            log.exception("job %s crashed", name)
            self._fail(name, f"internal error: {exc.__class__.__name__}: {exc}", {"code": "SystemError"})
        partial_errors_file(self.ws, name)
        keep_partial_output(self.ws, name)  # a job that failed while scoring keeps what it scored

    def _fail(self, name: str, message: str, error: dict[str, Any]) -> None:
        record_with_retries(f"the failure of job {name}", lambda: fail(self.store, name, message, error),
                            self.ws.settings.jobs.record_retry_s)

    def _record(self, what: str, fn: Callable[[], T]) -> T:
        return record_with_retries(what, fn, self.ws.settings.jobs.record_retry_s)

    def folder(self, name: str) -> JobFolder:
        return JobFolder.local(self.ws.settings.jobs_dir, name)

    def _run(self, job: JobRow, stop: threading.Event) -> None:
        plan = self.plan(job)
        folder = self.folder(job.name)
        done, manifest = folder.done_log(), folder.manifest()
        sources, files = self._inputs(job.name, plan)
        engine = self.engine(plan)
        # an engine whose nodes share no disk with the server writes the parts to a remote output store itself
        staged = staged_parts(self.ws, job) if getattr(engine, "writes_parts_to_storage", False) else None
        # ... and what the scripts write to AZUREML_BI_OUTPUT_PATH straight into the output (jobs/bi_output.py)
        bi_remote = bi_output.remote_target(self.ws, job) if getattr(engine, "writes_parts_to_storage", False) else None
        if staged is not None or bi_remote is not None:
            sources = {**sources, PARTS_SOURCE: staged.spec if staged is not None else bi_remote[0]}
        delegated = WorkerCredentials(sources, self.ws.settings.jobs.worker_credential_ttl_s,
                                      writable=frozenset({PARTS_SOURCE}))
        policy = plan.retry.policy()
        # every mini-batch of a complete listing finished (resumed in Finalizing, or a rerun that only
        # assembles a failed job's kept parts): no environment, no workers
        nothing_left = manifest.complete is not None and set(range(manifest.next_index)) <= done.indexes
        python_exe = None if nothing_left else self._environment(job.name, plan, folder)  # Preparing: "building environment"
        engine_job = EngineJob(
            name=job.name, workers=plan.limits.workers, scorer=plan.scorer.worker_config(),
            sources=delegated.current()[1], policy=policy, parts_dir=folder.parts_dir, logs_dir=folder.logs_dir,
            output_action=plan.output.action, logging_level=plan.logging_level,
            environment={**plan.environment_variables, **bi_output.environment(self.ws.settings.jobs_dir, job.name)},
            python_exe=python_exe,
            # how its workers are fenced (engines/sandbox.py): a local input store shows only the input's folder
            isolation={**self.ws.settings.worker_isolation(), "inputs": {key: r.path for key, r in files}},
            parts_store={"source": PARTS_SOURCE, "prefix": staged.prefix} if staged is not None else None,
            bi_output_store={"source": PARTS_SOURCE, "prefix": bi_remote[1]} if bi_remote is not None else None,
            init_timeout_s=plan.limits.init_timeout_s,
            log_max_bytes=self.ws.settings.jobs.worker_log_max_bytes,
            on_phase=lambda state, message, **data: phase(self.store, job.name, "init()", state, message, **data),
            deployment=f"{job.endpoint_name}/{job.deployment_name}",  # warm workers serve only this one
            warm_compute=warm_compute(plan),  # its compute's min_instances keeps warm workers past their idle time
        )
        progress = Progress(self.store, job.name, policy, stop, done, manifest, parts_dir=folder.parts_dir,
                            owner=job.owner)
        lister = Lister(self.store, job.name, files, plan.mini_batch_size, manifest,
                        queue_files=self.ws.settings.jobs.listing_queue_files)
        transition(self.store, job.name, JobStatus.RUNNING, "scoring mini-batches")
        lister.start()
        batches = (b for b in lister.batches() if b.index not in done.indexes)
        try:
            if nothing_left:
                for _ in batches:  # the lister replays the manifest (and records the listing) to its end
                    pass
            else:
                engine.run(engine_job, batches, observed(job.name, progress.on_outcome), stop,
                           credentials=delegated.current)
        finally:
            lister.close()
            progress.close(self.ws.settings.jobs.record_retry_s)  # the outcomes' counters not written yet
        lister.raise_if_failed()
        if progress.threshold_message:
            self._fail(job.name, progress.threshold_message, progress.first_error or {})
            return
        if stop.is_set():
            write_partial_output(self.ws, job.name)  # canceled: its finished rows, labelled partial
            return  # canceled, or the server is shutting down (the job resumes on restart)
        self._record(f"job {job.name} Finalizing",
                     lambda: transition(self.store, job.name, JobStatus.FINALIZING, "writing outputs"))
        # the check of the input files for changes (a stat of each listed file) runs beside the
        # output's assembly, in a process of its own: a thread would take turns with it on the GIL
        changed = lister.check_changed_files()
        bi_output.upload_bi_output(self.ws, job)  # what the scripts wrote to AZUREML_BI_OUTPUT_PATH
        write_output(self.ws, job, Path(engine_job.parts_dir))  # by the job's writer (none for summary_only)
        write_errors_file(self.ws, job)
        if staged is not None:
            drop_staged_parts(self.ws, job.name)  # the output holds them now (kept when a file failed)
        summary = progress.summary() + self._changed_inputs(job.name, changed)
        self._record(f"job {job.name} Completed",
                     lambda: transition(self.store, job.name, JobStatus.COMPLETED, summary))

    def _changed_inputs(self, name: str, changed: Callable[[], tuple[int, list[str]]]) -> str:
        """A warning for the job's status message when input files changed after they were
        listed (truncated, replaced, removed while the job ran): their rows may be from either
        version. The job is not failed for it. Empty when none did."""
        try:
            count, shown = changed()
        except Exception:  # noqa: BLE001 - a warning must not fail the job
            log.warning("job %s: could not check its input files for changes", name, exc_info=True)
            return ""
        if not count:
            return ""
        more = f" and {count - len(shown)} more" if count > len(shown) else ""
        log.warning("job %s: %d input file(s) changed while it ran: %s%s", name, count, ", ".join(shown), more)
        return (f"; warning: {count} input file(s) changed after they were listed, while the job ran (their rows "
                f"may come from either version): {', '.join(shown)}{more}")

    def _environment(self, name: str, plan: JobPlan, folder: JobFolder) -> str | None:
        """The Python of the job's pinned environment, built or found in the cache (None: the server's)."""
        assert plan.environment is not None  # pinned by self.plan()
        self._check_code(plan)
        return prepare_environment(
            self.ws.settings, self.store, plan.environment.deployment_view(), plan.scorer.worker_config(),
            Path(folder.logs_dir),
            lambda state, message, **data: phase(self.store, name, "building environment", state, message, **data))

    @staticmethod
    def _check_code(plan: JobPlan) -> None:
        """The code snapshot holds the files the invoke pinned (a snapshot replaced since then — its
        deployment re-created from the same folder — is not run in their place)."""
        if plan.scorer.code_hash is None or plan.scorer.code_dir is None:
            return
        found = code_hash(plan.scorer.code_dir)
        if found != plan.scorer.code_hash:
            raise BatchpointError(
                f"the scoring code of this job changed after it was invoked: the snapshot {plan.scorer.code_dir} holds "
                f"{found or 'nothing'}, the job was invoked with {plan.scorer.code_hash}; invoke the endpoint again "
                "to run the deployment's current code", details={"code_dir": plan.scorer.code_dir})

    def _inputs(self, name: str, plan: JobPlan) -> tuple[dict[str, StorageSpec], list[tuple[str, ResolvedInput]]]:
        """Each input as its invoke pinned it (never resolved again from its text), read with the
        job's identity; the storage spec of each input by name, and the inputs in order."""
        sources: dict[str, StorageSpec] = {}
        files: list[tuple[str, ResolvedInput]] = []
        principal = plan.identity.principal
        assignments = self.ws.assignments(principal) if principal else []
        assert plan.engine is not None  # pinned by self.plan()
        identity = identity_for(self.ws, plan.engine, principal, assignments)
        for item in plan.inputs:
            if item.pin is not None:
                resolved = self.ws.resolver.from_pin(thawed(item.pin), identity, item.path)
            else:  # a job invoked before inputs were pinned: resolved from its text, as it was then
                resolved = self.ws.resolver.resolve(item.path, item.type, identity)
            sources[item.key] = resolved.spec
            files.append((item.key, resolved))
        return sources, files
