"""Run one job: resolve its inputs, list files (in the background), score mini-batches on the
engine, record progress, write the output, and finish with a status that carries the root cause.

A job directory ``<home>/jobs/<name>/`` holds ``parts/`` (one CSV per scored mini-batch),
``logs/`` (one log per worker) and ``done.jsonl`` (finished mini-batches), which lets a job whose
server died resume where it stopped instead of starting again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, MiniBatchOutcome, RetryPolicy, plan_minibatches
from batchpoint.exceptions import BatchpointError, UserCodeError
from batchpoint.identity.delegation import WorkerCredentials
from batchpoint.jobs.lifecycle import fail, transition
from batchpoint.jobs.output import write_output
from batchpoint.jobs.states import JobStatus
from batchpoint.storage.registry import open_backend

log = logging.getLogger(__name__)
_END = object()


class JobRunner:
    def __init__(self, workspace: Any, engine: Any) -> None:
        self.ws = workspace
        self.store = workspace.store
        self.engine = engine

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
        done = _DoneLog(job_dir / "done.jsonl")
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
        progress = _Progress(self.store, job.name, policy, stop, done)
        lister = _Lister(self.store, job.name, files, settings["mini_batch_size"])
        transition(self.store, job.name, JobStatus.RUNNING, "scoring mini-batches")
        lister.start()
        batches = (b for b in lister.batches() if b.index not in done.indexes)
        try:
            self.engine.run(engine_job, batches, progress.on_outcome, stop, credentials=delegated.current)
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


class _DoneLog:
    """Finished mini-batches, appended as they finish; read back when a job resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.indexes: set[int] = set()
        self.totals = {"files_completed": 0, "files_failed": 0, "rows": 0, "mini_batches_completed": 0,
                       "mini_batches_failed": 0}
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.indexes.add(entry["index"])
                for k in self.totals:
                    self.totals[k] += entry.get(k, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, index: int, **counts: int) -> None:
        with self._lock, open(self.path, "a") as out:
            out.write(json.dumps({"index": index, **counts}) + "\n")


class _Progress:
    def __init__(self, store: Any, name: str, policy: RetryPolicy, stop: threading.Event, done: _DoneLog) -> None:
        self.store, self.name, self.policy, self.stop, self.done = store, name, policy, stop, done
        self.files_failed = done.totals["files_failed"]
        self.first_batch_seen = bool(done.indexes)
        self.split: dict[int, list[Any]] = {}  # index -> [pieces left, pieces failed, summed counts]
        self.threshold_message: str | None = None
        self.first_error: dict[str, Any] | None = None
        self.failed_names: list[str] = []
        if done.indexes:  # resumed: the files that failed before are still named in the summary
            self.failed_names = [f.file.rsplit("/", 1)[-1] for f in store.list_failures(name, limit=5) if f.file]
        store.update_job(name, **done.totals)

    def on_outcome(self, outcome: MiniBatchOutcome) -> None:
        b = outcome.batch
        files_ok = 0 if outcome.error else len(b.files)
        files_failed = len(b.files) - files_ok
        deltas = {"files_completed": files_ok, "files_failed": files_failed, "rows": outcome.rows}
        finished, totals = self._batch_finished(b, failed=bool(outcome.error), deltas=deltas)
        if finished is not None:
            key = "mini_batches_failed" if finished else "mini_batches_completed"
            deltas[key] = totals[key] = 1
        if outcome.error is not None:
            self._record_failure(b, outcome.error)
        if finished is not None:
            # the resume record first: a mini-batch the job's progress shows as finished is never scored again
            self.done.add(b.index, **totals)
        self.store.add_job_counts(self.name, **deltas)
        if not self.first_batch_seen and outcome.error is None:
            self.first_batch_seen = True
            self.store.update_job(self.name, first_mini_batch_at=utcnow())

    def _batch_finished(self, b: MiniBatch, failed: bool, deltas: dict[str, int]) -> tuple[bool | None, dict[str, int]]:
        """(None while pieces of a split mini-batch are outstanding, else whether it failed; the counts of
        the whole mini-batch, all its pieces summed, for the resume record)."""
        if b.sub == 0:
            return failed, dict(deltas)
        state = self.split.setdefault(b.index, [b.pieces, 0, {}])
        state[0] -= 1
        state[1] += int(failed)
        for key, value in deltas.items():
            state[2][key] = state[2].get(key, 0) + value
        if state[0] > 0:
            return None, {}
        del self.split[b.index]
        return state[1] > 0, state[2]

    def _record_failure(self, b: MiniBatch, error: dict[str, Any]) -> None:
        names = [f.path for f in b.files]
        where = f" ({error['where']})" if error.get("where") else ""
        text = f"{error['type']}: {error['message']}{where}"
        for path in names:
            self.store.add_failure(self.name, b.index, path, text + ("\n" + error["traceback"] if error.get("traceback") else ""))
        self.files_failed += len(names)
        if len(self.failed_names) < 5:
            self.failed_names.extend(n.rsplit("/", 1)[-1] for n in names)
        if self.first_error is None:
            self.first_error = {"code": "UserError", "file": names[0], **{k: error.get(k) for k in ("type", "message", "where")}}
        if self.policy.threshold_exceeded(self.files_failed) and self.threshold_message is None:
            self.threshold_message = (
                f"{self.files_failed} file(s) failed, more than error_threshold {self.policy.error_threshold} allows. "
                f"First failure: {names[0].rsplit('/', 1)[-1]}: {text}"
            )
            self.first_error["message_summary"] = self.threshold_message
            self.stop.set()

    def summary(self) -> str:
        if not self.files_failed:
            return "all mini-batches scored"
        shown = ", ".join(self.failed_names[:5])
        return (f"completed with {self.files_failed} failed file(s) (error_threshold "
                f"{self.policy.error_threshold} ignores them): {shown}")


class _Lister:
    """Lists input files on a background thread into a bounded queue, so scoring starts with the
    first mini-batch while a long listing goes on; counts and timestamps are recorded on the job."""

    def __init__(self, store: Any, name: str, inputs: list[tuple[str, Any]], mini_batch_size: int) -> None:
        self.store, self.name, self.inputs, self.size = store, name, inputs, mini_batch_size
        self.q: queue.Queue[Any] = queue.Queue(maxsize=max(256, mini_batch_size * 64))
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._list, name=f"lister-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _files(self) -> Iterator[FileRef]:
        for key, resolved in self.inputs:
            if resolved.type == "uri_file":
                yield FileRef(key, resolved.path)
                continue
            for info in open_backend(resolved.spec).iter_files(resolved.path):
                yield FileRef(key, info.path)

    def _list(self) -> None:
        count = batches = 0
        try:
            for batch in plan_minibatches(self._files(), self.size):
                count += len(batch.files)
                batches += 1
                if not self._put(batch):
                    return
            self.store.update_job(self.name, files_total=count, mini_batches_total=batches, listing_complete=True,
                                  listing_completed_at=utcnow())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the runner's thread
            self.error = exc
        finally:
            self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self.closed.is_set():
            try:
                self.q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.closed.set()

    def batches(self) -> Iterator[MiniBatch]:
        while True:
            item = self.q.get()
            if item is _END:
                return
            yield item

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
