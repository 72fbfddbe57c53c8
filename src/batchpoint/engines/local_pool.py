"""``LocalPoolEngine``: ``instance_count × max_concurrency_per_instance`` worker processes here.

Workers are started by a launcher (``engines/launchers.py``): by default forks of a forkserver that
has pandas / MLflow / scikit-learn imported already, so a worker is ready in milliseconds plus the
model's own load time; or ``python -m batchpoint.worker`` in a given interpreter. Engine and
worker speak the JSON worker protocol (``worker/protocol.py``). Each worker calls ``init()`` once
and then scores mini-batch after mini-batch. While every worker is busy and enough work is left
for all of them, each gets its next mini-batch ahead, so it starts it without a round trip through
the engine (:meth:`_Run._send_ahead`).

This module only *executes* decisions: what a failure leads to (retry, split, report, fail the
job; init deaths per slot) is :class:`batchpoint.engines.policy.FailurePolicy`. Platform retries
are noted in the worker's log (``logs/worker-<slot>.log``), where the user sees them.

Each worker's ``init()`` is bounded by ``settings.init_timeout`` (``EngineJob.init_timeout_s``):
past it the worker is killed and counted like a death in ``init()`` (the policy's
``on_init_timeout``); while the first workers run ``init()`` the job shows the phase
"running init() on N workers" (``EngineJob.on_phase``). A worker that dies while its ``run()`` runs
(it marks that in a small state file, ``protocol.WorkerState``) fails its mini-batch as the scoring
code's (``policy.death_in_run``: exit code or signal, the OOM killer when its cgroup counted one,
its peak memory as last sampled from ``/proc``); one lost anywhere else is the platform's.

``credentials`` (optional) returns ``(version, sources)``: the storage specs workers read with,
re-minted by :class:`batchpoint.identity.delegation.WorkerCredentials` before they expire. A worker
starts with the current set and gets a newer one along with its next mini-batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from batchpoint.engines.base import Engine, OutcomeSink, Sources
from batchpoint.engines.dispatch import InitPhase, LogCap, WorkQueue, fresh_sources
from batchpoint.engines import launchers
from batchpoint.engines.launchers import ForkserverLauncher, Launcher, SubprocessLauncher
from batchpoint.engines.planning import EngineJob, MiniBatch
from batchpoint.engines.sandbox import SandboxLauncher, check, isolation_of
from batchpoint.engines.policy import (
    FailureKind, FailurePolicy, WorkerInitError, death_in_run, exit_text,
)
from batchpoint.worker import protocol
from batchpoint.worker.protocol import scratch_root

__all__ = ["LocalPoolEngine", "WorkerInitError", "warm_up"]

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    slot: int
    proc: Any
    conn: Connection
    ready: bool = False
    batch: MiniBatch | None = None
    queued: MiniBatch | None = None  # sent ahead, starts when ``batch`` is done (see _Run._send_ahead)
    deadline: float = 0.0
    started: float = 0.0
    sources_version: int = 0
    init_deadline: float = float("inf")  # when its init() must have returned (settings.init_timeout)
    peak_rss: int = 0  # bytes, as last sampled from /proc (VmHWM)
    oom_kills: tuple[str, int] | None = None  # (its memory cgroup's counter file, the count at start)


#: how often the memory of busy workers is sampled (their peak RSS, named if they die)
MEMORY_SAMPLE_S = 0.5


def _worker_exitcode(proc: Any) -> int | None:
    """The worker's own exit status: ``-N`` when a signal killed it. A sandboxed worker's process
    handle is bubblewrap's (it has ``bwrap_pid``), which exits with ``128 + N`` when the worker
    inside was killed by signal N; that is turned back into ``-N``."""
    code = proc.exitcode
    if getattr(proc, "bwrap_pid", None) is not None and code is not None and 128 < code < 128 + 65:
        return -(code - 128)
    return code


def _vm_hwm(pid: int) -> int:
    """The peak resident memory of process ``pid`` in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _oom_counter(pid: int) -> tuple[str, int] | None:
    """The OOM-kill counter of the memory cgroup of ``pid`` and its value now: cgroup v2
    ``memory.events`` (``oom_kill``), or v1 ``memory.oom_control``; None when there is none."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            path = f"/sys/fs/cgroup{parts[2]}/memory.events"
        elif "memory" in parts[1].split(","):
            path = f"/sys/fs/cgroup/memory{parts[2]}/memory.oom_control"
        else:
            continue
        count = _oom_count(path)
        if count is not None:
            return path, count
    return None


def _oom_count(path: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _cgroup_peak(counter: str) -> int | None:
    """The most memory the cgroup beside ``counter`` ever held (v2 ``memory.peak``, v1
    ``memory.max_usage_in_bytes``); None when it cannot be read."""
    folder = Path(counter).parent
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        try:
            text = (folder / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def _memory_limit(counter: str) -> int | None:
    """The cgroup's memory limit beside ``counter`` (None: none, or unlimited)."""
    folder = Path(counter).parent
    for name in ("memory.max", "memory.limit_in_bytes"):
        try:
            text = (folder / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def warm_up(isolation: dict[str, Any] | None = None) -> None:
    """At server start-up: say how scoring code will be fenced (an error naming what to install
    when it cannot be, a warning for the operator's opt-out); the unfenced opt-out starts its
    forkserver now, so the first job does not pay for the imports."""
    options = {**(isolation or {}), "mode": (isolation or {}).get("mode", "bwrap")}
    if options["mode"] == "none":
        log.warning("workers.isolation is 'none' (BATCHPOINT_WORKERS__ISOLATION): scoring code will run UNFENCED, "
                    "with this server's rights and view of the machine (its keys, its database, other jobs); "
                    "docs/security.md, 'Scoring code is fenced'")
        launchers.warm_up()
        return
    problem = check(options)
    if problem is not None:
        log.error("jobs on the local pool will fail until this is fixed: %s", problem)
    else:
        log.info("scoring code runs fenced: each worker in a bubblewrap sandbox (docs/security.md)")


class LocalPoolEngine(Engine):
    name = "local"

    def __init__(self, launcher: Launcher | None = None) -> None:
        #: a launcher given here (tests) is used as it is; else each job's workers are fenced
        #: (engines/sandbox.py) unless its isolation is the operator's explicit "none"
        self.given = launcher
        self.launcher = launcher or ForkserverLauncher()

    def _launcher(self, job: EngineJob) -> Launcher:
        if self.given is not None:
            return self.given
        if isolation_of(job)["mode"] != "none":
            return SandboxLauncher(job, job.python_exe)  # refuses when bubblewrap does not work here
        log.warning("job %s: its scoring code runs UNFENCED, with the server's rights and view of this machine "
                    "(workers.isolation is 'none': BATCHPOINT_WORKERS__ISOLATION; docs/security.md)", job.name)
        # a deployment's own environment: its workers are that interpreter's (docs/environments.md)
        # (the server's PYTHONPATH and user site-packages left out: only the environment and its worker copy)
        return (SubprocessLauncher(job.python_exe, env={"PYTHONPATH": "", "PYTHONHOME": "", "PYTHONNOUSERSITE": "1"})
                if job.python_exe else self.launcher)

    def run(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink,
            stop: threading.Event, credentials: Sources | None = None) -> None:
        launcher = self._launcher(job)
        run = _Run(launcher, job, batches, on_outcome, stop, credentials)
        try:
            run.start()
            run.loop()
        finally:
            run.shutdown()


class _Run:
    def __init__(self, launcher: Launcher, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink,
                 stop: threading.Event, credentials: Sources | None = None) -> None:
        self.launcher, self.job, self.on_outcome, self.stop = launcher, job, on_outcome, stop
        self.credentials = credentials
        self.policy = FailurePolicy(job.policy)
        self.work = WorkQueue(batches)
        self.workers: dict[int, _Worker] = {}
        self.init_phase = InitPhase(job, log)
        self.sampled = 0.0
        self.drained = False  # every mini-batch was handed out and finished
        self.logs = LogCap([self._log_path(slot) for slot in range(job.workers)], job.log_max_bytes)

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.init_phase.start()
        for slot in range(self.job.workers):
            self.workers[slot] = self._spawn(slot)

    @property
    def state_dir(self) -> Path:
        """The workers' state files (``protocol.WorkerState``), beside ``parts/`` in the job folder."""
        return Path(self.job.parts_dir).parent / "state"

    def _log_path(self, slot: int) -> Path:
        return Path(self.job.logs_dir) / f"worker-{slot}.log"

    def _log_name(self, slot: int) -> str:
        """The worker's log as the job's users know it (relative to the job: no server path)."""
        return f"logs/worker-{slot}.log (job {self.job.name})"

    def _spawn(self, slot: int) -> _Worker:
        version, sources = self.credentials() if self.credentials is not None else (0, self.job.sources)
        state_file = self.state_dir / f"worker-{slot}"
        state_file.unlink(missing_ok=True)  # a new worker starts outside run()
        proc, conn = self.launcher.launch(slot, self.job.name, self._log_path(slot))
        w = _Worker(slot, proc, conn, sources_version=version,
                    init_deadline=time.monotonic() + self.job.init_timeout_s)
        job = self.job
        config = protocol.job_config(
            name=job.name, worker_id=slot, scorer=job.scorer, sources=sources, parts_dir=job.parts_dir,
            logs_dir=job.logs_dir, write_rows=job.write_rows, logging_level=job.logging_level,
            environment=job.environment, server_pid=os.getpid(),  # the worker ends itself when this process dies
            state_file=str(state_file))
        config.update(self.launcher.worker_config(job, slot))  # its own folders (and sandbox: no server pid)
        self._send(w, protocol.start(config))
        return w

    def _send(self, w: _Worker, message: dict[str, Any]) -> bool:
        try:
            w.conn.send_bytes(protocol.encode(message))
            return True
        except OSError:  # it died; _check_deadlines_and_deaths replaces it
            return False

    def _assign(self) -> None:
        for w in self.workers.values():
            if w.ready and w.batch is None:
                batch = self.work.next()
                if batch is None:
                    return
                w.batch, w.started = batch, time.monotonic()
                w.deadline = w.started + self.job.policy.timeout_s
                self._send_batch(w, batch)
        self._send_ahead()

    def _send_batch(self, w: _Worker, batch: MiniBatch) -> None:
        files = [{"source": f.source, "path": f.path} for f in batch.files]
        self._send(w, protocol.batch(batch.key, batch.index, batch.sub, batch.attempt, batch.pieces, files,
                                     fresh_sources(self.credentials, w)))

    def _send_ahead(self) -> None:
        """Send each busy worker its next mini-batch before it finishes the current one, so it
        starts it without waiting for a round trip through this loop (the message waits in its
        connection). Only while every worker is busy, at least one more mini-batch per worker is
        still to be handed out besides it, and no retry waits: a mini-batch sent ahead waits behind its worker's
        current one, which may be slow or stuck, so it must never be one another worker that
        comes free would have had. Its clock starts when the one before it is done."""
        if self.work.retry or any(not w.ready or w.batch is None for w in self.workers.values()):
            return  # a worker starting or idle gets the next one itself
        self.work.take_ahead(self.job.workers + 1)
        for w in self.workers.values():
            if len(self.work.ahead) <= self.job.workers:
                return
            if w.ready and w.batch is not None and w.queued is None and w.proc.is_alive():
                w.queued = self.work.ahead.popleft()
                self._send_batch(w, w.queued)

    def loop(self) -> None:
        while not self.stop.is_set():
            self._assign()
            busy = [w for w in self.workers.values() if w.batch is not None]
            if not busy and self.work.drained():
                self.drained = True
                return
            now = time.monotonic()
            waits = [w.deadline - now for w in busy] + self.work.next_wait(now) + [0.2]
            waits += [w.init_deadline - now for w in self.workers.values() if not w.ready]
            ready_conns = wait([w.conn for w in self.workers.values()], timeout=max(0.0, min(waits)))
            for w in list(self.workers.values()):
                if w.conn in ready_conns:
                    self._receive(w)
            self._check_deadlines_and_deaths()
            self._sample_memory()
            self.logs.check()

    def _receive(self, w: _Worker) -> None:
        try:
            data = w.conn.recv_bytes()
        except (EOFError, OSError):
            if self.workers.get(w.slot) is w:
                self._lost(w, self._death_error(w))
            return
        msg = protocol.decode(data, peer=f"worker of slot {w.slot} of job {self.job.name}")
        if msg["type"] == "ready":
            w.ready = True
            w.init_deadline = float("inf")
            w.oom_kills = _oom_counter(w.proc.pid)
            self.policy.on_worker_ready(w.slot)
            self.init_phase.ready(w.slot)
        elif msg["type"] == "init_failed":
            raise WorkerInitError(msg["error"])
        elif msg["type"] == "done":
            batch, now = w.batch, time.monotonic()
            seconds = now - w.started
            w.batch, w.queued = w.queued, None  # the one sent ahead has started
            if w.batch is not None:
                w.started, w.deadline = now, now + self.job.policy.timeout_s
            if batch is not None:
                self._finish(batch, msg["rows"], msg["error"], seconds, w.slot, int(msg.get("missing") or 0))

    def _sample_memory(self) -> None:
        """Note the peak memory of each busy worker (every :data:`MEMORY_SAMPLE_S`): what it held is
        named if it dies in run() (the process is gone by then)."""
        now = time.monotonic()
        if now - self.sampled < MEMORY_SAMPLE_S:
            return
        self.sampled = now
        for w in self.workers.values():
            if w.batch is not None:
                w.peak_rss = max(w.peak_rss, _vm_hwm(w.proc.pid))

    def _died_in_run(self, w: _Worker) -> bool:
        return (w.batch is not None and w.ready
                and protocol.WorkerState.read(str(self.state_dir / f"worker-{w.slot}")) == protocol.WorkerState.IN_RUN)

    def _death_error(self, w: _Worker) -> dict[str, Any]:
        w.proc.join(timeout=1)
        if self._died_in_run(w):  # in the scoring code: the mini-batch's failure (kind user)
            assert w.batch is not None
            memory: dict[str, Any] = {"peak_rss": max(w.peak_rss, 0)}
            if w.oom_kills is not None:
                count = _oom_count(w.oom_kills[0])
                memory["oom_kills"] = (count or 0) - w.oom_kills[1]
                memory["limit"] = _memory_limit(w.oom_kills[0])
                if memory["oom_kills"]:  # what the cgroup held at its peak (the kill came at its limit)
                    memory["peak_rss"] = max(memory["peak_rss"], _cgroup_peak(w.oom_kills[0]) or 0)
            return death_in_run(w.slot, w.batch.key, _worker_exitcode(w.proc), self._log_name(w.slot), memory)
        where = f"mini-batch {w.batch.key}" if w.batch else "no mini-batch"
        return {"type": "WorkerLost", "where": None, "kind": FailureKind.PLATFORM.value, "message":
                f"the worker process of slot {w.slot} died while scoring {where} (exit code "
                f"{exit_text(w.proc.exitcode)}); see the worker log {self._log_path(w.slot)}"}

    def _check_deadlines_and_deaths(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if not w.ready and now > w.init_deadline and self.workers.get(w.slot) is w:
                self._init_timed_out(w)
            elif w.batch is not None and now > w.deadline:
                self._lost(w, {"type": "TimeoutError", "where": None, "kind": FailureKind.TIMEOUT.value, "message":
                               f"the mini-batch did not finish within the timeout of {self.job.policy.timeout_s:g}s "
                               "(retry_settings.timeout)"})
            elif not w.proc.is_alive() and not w.conn.poll():
                self._lost(w, self._death_error(w))

    def _init_timed_out(self, w: _Worker) -> None:
        """``w``'s init() passed ``settings.init_timeout``: kill it, count it like a death in init()
        (the policy raises the job's error on the last one), start a new worker in its slot."""
        timeout = self.job.init_timeout_s
        self._note(w.slot, f"init() did not return within settings.init_timeout ({timeout:g} s): the worker "
                           f"(pid {w.proc.pid}) is killed")
        w.proc.kill()
        w.proc.join(timeout=5)
        w.conn.close()
        self.policy.on_init_timeout(w.slot, timeout, self._log_name(w.slot))
        log.warning("job %s worker %s replaced: init() passed %gs", self.job.name, w.slot, timeout)
        self.workers[w.slot] = self._spawn(w.slot)

    def _lost(self, w: _Worker, error: dict[str, Any]) -> None:
        """End ``w`` (dead, or past its deadline), start a new worker in its slot, and settle its batch."""
        batch, seconds = w.batch, time.monotonic() - w.started
        if w.queued is not None:  # sent ahead, never started: handed out again first, as it was
            self.work.put_first(w.queued)
            w.queued = None
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        w.conn.close()
        if not w.ready:  # died before init() returned: counted per slot, in a row (may fail the job)
            self.policy.on_init_death(w.slot, w.proc.exitcode, str(self._log_path(w.slot)))
        log.warning("job %s worker %s replaced: %s", self.job.name, w.slot, error["message"])
        self.workers[w.slot] = self._spawn(w.slot)
        if batch is not None:
            self._finish(batch, 0, error, seconds, w.slot)

    def _finish(self, batch: MiniBatch, rows: int, error: dict[str, Any] | None, seconds: float, slot: int,
                missing: int = 0) -> None:
        if error is not None and error.get("type") == "WorkerDied":
            self._note(slot, f"mini-batch {batch.key} (attempt {batch.attempt}): {error['message']}")
        self.work.put_back(self.policy.settle(batch, rows, error, seconds, self.on_outcome,
                                                 lambda text: self._note(slot, text), missing))

    def _note(self, slot: int, text: str) -> None:
        """A line of the engine's in the worker's log, where the user reads what happened to a mini-batch."""
        log.warning("job %s: %s", self.job.name, text)
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        try:
            with open(self._log_path(slot), "a") as out:
                out.write(f"{stamp} WARNING batchpoint.engine: {text}\n")
        except OSError:  # a full disk: the server log has it
            pass

    def shutdown(self) -> None:
        """Idle workers are asked to stop; busy ones (a cancel, a failed job, the server closing:
        their result would not be recorded) are killed at once, even inside user code."""
        for w in self.workers.values():
            if w.batch is None and w.proc.is_alive():
                self._send(w, protocol.stop())
            elif w.proc.is_alive():
                w.proc.kill()
        deadline = time.monotonic() + 3
        for w in self.workers.values():
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()
        # what the workers downloaded, also a killed worker's (its own clean-up never ran)
        shutil.rmtree(scratch_root(self.job.parts_dir), ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        for tmp in Path(self.job.parts_dir).glob(".*.tmp"):  # a part a killed worker was writing
            tmp.unlink(missing_ok=True)
        self.init_phase.end(ran_out_of_work=self.drained)  # the job ended before every worker ran init()
