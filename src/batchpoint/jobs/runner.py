"""Run one job: resolve its inputs, list files (in the background), score mini-batches on the
engine, record progress, write the output, and finish with a status that carries the root cause.

A job directory ``<home>/jobs/<name>/`` holds ``parts/`` (one CSV per scored mini-batch),
``logs/`` (one log per worker) and ``done.jsonl`` (finished mini-batches), which lets a job whose
server died resume where it stopped instead of starting again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from batchpoint.engines.base import Engine, engine_for
from batchpoint.engines.planning import EngineJob, RetryPolicy
from batchpoint.exceptions import BatchpointError, UserCodeError
from batchpoint.identity.delegation import WorkerCredentials
from batchpoint.jobs.folder import DoneLog
from batchpoint.jobs.lifecycle import fail, transition
from batchpoint.jobs.listing import Lister
from batchpoint.jobs.output import write_output
from batchpoint.jobs.progress import Progress
from batchpoint.jobs.states import JobStatus
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, workspace: WorkspaceService) -> None:
        self.ws = workspace
        self.store = workspace.store

    def engine(self, job: JobRow) -> Engine:
        """The engine of the job's compute (the local pool without one)."""
        deployment = self.store.get_deployment(job.endpoint_name, job.deployment_name)
        compute = (deployment.spec.get("compute") or "").removeprefix("azureml:")
        return engine_for(self.store.get_compute(compute).spec if compute else None)

    def run(self, name: str, stop: threading.Event) -> None:
        job = self.store.get_job(name)
        try:
            self._run(job, stop)
        except UserCodeError as exc:
            fail(self.store, name, str(exc), {"code": "UserError", "message": str(exc), **exc.details})
        except BatchpointError as exc:
            fail(self.store, name, str(exc), {"code": exc.code, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a platform bug must still end the job clearly
            log.exception("job %s crashed", name)
            fail(self.store, name, f"internal error: {exc.__class__.__name__}: {exc}", {"code": "SystemError"})

    def _run(self, job: Any, stop: threading.Event) -> None:
        plan, settings = job.plan, job.settings
        job_dir = self.ws.settings.jobs_dir / job.name
        done = DoneLog(job_dir / "done.jsonl")
        sources, files = self._inputs(job)
        delegated = WorkerCredentials(sources, self.ws.settings.jobs.worker_credential_ttl_s)
        policy = RetryPolicy(settings["retry_settings"]["max_retries"], settings["retry_settings"]["timeout"],
                             settings["error_threshold"])
        engine_job = EngineJob(
            name=job.name, workers=plan["workers"], scorer=plan["scorer"], sources=delegated.current()[1], policy=policy,
            parts_dir=str(job_dir / "parts"), logs_dir=str(job_dir / "logs"),
            write_rows=settings["output_action"] == "append_row", logging_level=settings["logging_level"],
            environment=settings.get("environment_variables") or {},
        )
        progress = Progress(self.store, job.name, policy, stop, done)
        lister = Lister(self.store, job.name, files, settings["mini_batch_size"])
        transition(self.store, job.name, JobStatus.RUNNING, "scoring mini-batches")
        lister.start()
        batches = (b for b in lister.batches() if b.index not in done.indexes)
        try:
            self.engine(job).run(engine_job, batches, progress.on_outcome, stop, credentials=delegated.current)
        finally:
            lister.close()
        lister.raise_if_failed()
        if progress.threshold_message:
            fail(self.store, job.name, progress.threshold_message, progress.first_error)
            return
        if stop.is_set():
            return  # canceled, or the server is shutting down (the job resumes on restart)
        transition(self.store, job.name, JobStatus.FINALIZING, "writing outputs")
        if engine_job.write_rows:
            write_output(self.ws, job, Path(engine_job.parts_dir))
        transition(self.store, job.name, JobStatus.COMPLETED, progress.summary())

    def _inputs(self, job: Any) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        from batchpoint.jobs.submit import identity_for

        sources: dict[str, Any] = {}
        files: list[tuple[str, Any]] = []
        deployment = self.store.get_deployment(job.endpoint_name, job.deployment_name)
        assignments = self.ws.assignments(job.created_by) if job.created_by else []
        identity = identity_for(self.ws, deployment.spec, job.created_by, assignments)
        for key, spec in job.inputs.items():
            resolved = self.ws.resolver.resolve(spec["path"], spec.get("type"), identity)
            sources[key] = resolved.spec
            files.append((key, resolved))
        return sources, files
