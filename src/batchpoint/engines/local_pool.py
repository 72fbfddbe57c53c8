"""``LocalPoolEngine``: ``instance_count × max_concurrency_per_instance`` worker processes here.

Workers come from a forkserver that has pandas / MLflow / scikit-learn imported already, so a
worker is ready in milliseconds plus the model's own load time; each worker calls ``init()`` once
and then scores mini-batch after mini-batch. The engine owns the policy: a mini-batch that raises
or passes ``timeout`` is retried up to ``max_retries`` (a timed-out worker is killed and replaced);
a multi-file mini-batch that still fails is split into single files, so the failing file is named
and the others are scored; every final outcome goes to ``on_outcome``.

``credentials`` (optional) returns ``(version, sources)``: the storage specs workers read with,
re-minted by :class:`batchpoint.identity.delegation.WorkerCredentials` before they expire. A worker
starts with the current set and gets a newer one along with its next mini-batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from batchpoint.engines.base import Engine, OutcomeSink, Sources
from batchpoint.engines.planning import EngineJob, MiniBatch, MiniBatchOutcome
from batchpoint.engines.worker import worker_main
from batchpoint.exceptions import UserCodeError

log = logging.getLogger(__name__)

PRELOAD = ["batchpoint.engines.preload"]
MAX_INIT_DEATHS = 3
_ctx_lock = threading.Lock()
_ctx: Any = None


def mp_context() -> Any:
    """The forkserver context with the heavy imports preloaded (started once per server)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _ctx = ctx
        return _ctx


def warm_up() -> None:
    """Start the forkserver now (server start-up), so the first job does not pay for imports."""
    proc = mp_context().Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()


class WorkerInitError(UserCodeError):
    """init() of the scorer raised in a worker: the job cannot run."""

    def __init__(self, error: dict[str, Any]) -> None:
        where = f" ({error['where']})" if error.get("where") else ""
        super().__init__(f"init() failed: {error['type']}: {error['message']}{where}", details={"error": error})
        self.error = error


@dataclass
class _Worker:
    wid: int
    proc: Any
    conn: Connection
    ready: bool = False
    batch: MiniBatch | None = None
    deadline: float = 0.0
    started: float = 0.0
    sources_version: int = 0


class LocalPoolEngine(Engine):
    name = "local"

    def run(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink,
            stop: threading.Event, credentials: Sources | None = None) -> None:
        run = _Run(job, batches, on_outcome, stop, credentials)
        try:
            run.loop()
        finally:
            run.shutdown()


class _Run:
    def __init__(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: Callable[[MiniBatchOutcome], None],
                 stop: threading.Event, credentials: Sources | None = None) -> None:
        self.job, self.batches, self.on_outcome, self.stop = job, batches, on_outcome, stop
        self.credentials = credentials
        self.retry: deque[MiniBatch] = deque()
        self.exhausted = False
        self.init_deaths = 0  # workers that died before init() returned (a crash no exception reports)
        self.ctx = mp_context()
        self.workers = {i: self._spawn(i) for i in range(job.workers)}

    def _spawn(self, wid: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        job, version = self.job, 0
        if self.credentials is not None:
            version, sources = self.credentials()
            job = dataclasses.replace(job, sources=sources)
        proc = self.ctx.Process(target=worker_main, args=(child, wid, job), daemon=True,
                                name=f"batchpoint-{self.job.name}-w{wid}")
        proc.start()
        child.close()
        return _Worker(wid, proc, parent, sources_version=version)

    def _fresh_sources(self, w: _Worker) -> dict[str, Any] | None:
        """The current sources when ``w`` has an older set, else None."""
        if self.credentials is None:
            return None
        version, sources = self.credentials()
        if version == w.sources_version:
            return None
        w.sources_version = version
        return sources

    def _next_batch(self) -> MiniBatch | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        batch = next(self.batches, None)
        if batch is None:
            self.exhausted = True
        return batch

    def _assign(self) -> None:
        for w in self.workers.values():
            if w.ready and w.batch is None:
                batch = self._next_batch()
                if batch is None:
                    return
                w.batch, w.started = batch, time.monotonic()
                w.deadline = w.started + self.job.policy.timeout_s
                w.conn.send((batch, self._fresh_sources(w)))

    def loop(self) -> None:
        while not self.stop.is_set():
            self._assign()
            busy = [w for w in self.workers.values() if w.batch is not None]
            if not busy and self.exhausted and not self.retry:
                return
            now = time.monotonic()
            timeout = min([w.deadline - now for w in busy] + [0.2])
            ready_conns = wait([w.conn for w in self.workers.values()], timeout=max(0.0, timeout))
            for w in list(self.workers.values()):
                if w.conn in ready_conns:
                    self._receive(w)
            self._check_deadlines_and_deaths()

    def _receive(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._lost(w, "the worker process exited unexpectedly")
            return
        kind = msg[0]
        if kind == "ready":
            w.ready = True
        elif kind == "init_failed":
            raise WorkerInitError(msg[1])
        elif kind == "done":
            _, _key, rows, error = msg
            batch, seconds = w.batch, time.monotonic() - w.started
            w.batch = None
            if batch is not None:
                self._finish(batch, rows, error, seconds)

    def _check_deadlines_and_deaths(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.batch is not None and now > w.deadline:
                self._lost(w, f"the mini-batch did not finish within the timeout of {self.job.policy.timeout_s:g}s "
                              "(retry_settings.timeout)", timed_out=True)
            elif not w.proc.is_alive() and not w.conn.poll():
                self._lost(w, f"the worker process died (exit code {w.proc.exitcode})")

    def _lost(self, w: _Worker, reason: str, timed_out: bool = False) -> None:
        batch, seconds = w.batch, time.monotonic() - w.started
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        w.conn.close()
        if not w.ready:
            # os._exit(), a segfault or the OOM killer in init(): replacing it would loop for ever
            self.init_deaths += 1
            if self.init_deaths >= MAX_INIT_DEATHS:
                raise WorkerInitError({"type": "WorkerLost", "where": None, "message":
                                       f"the worker process died before init() returned (exit code "
                                       f"{w.proc.exitcode}), {self.init_deaths} times; see the worker logs"})
        log.warning("job %s worker %s replaced: %s", self.job.name, w.wid, reason)
        self.workers[w.wid] = self._spawn(w.wid)
        if batch is not None:
            error = {"type": "TimeoutError" if timed_out else "WorkerLost", "message": reason, "where": None}
            self._finish(batch, 0, error, seconds)

    def _finish(self, batch: MiniBatch, rows: int, error: dict[str, Any] | None, seconds: float) -> None:
        policy = self.job.policy
        if error is None:
            self.on_outcome(MiniBatchOutcome(batch, rows=rows, seconds=seconds))
        elif policy.should_retry(batch):
            self.retry.append(batch.retry())
        elif len(batch.files) > 1:
            self.retry.extend(batch.split(final_attempt=policy.max_retries + 1))
        else:
            self.on_outcome(MiniBatchOutcome(batch, error=error, seconds=seconds))

    def shutdown(self) -> None:
        for w in self.workers.values():
            try:
                if w.batch is None and w.proc.is_alive():
                    w.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        for w in self.workers.values():
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()
