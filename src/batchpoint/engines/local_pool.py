"""``LocalPoolEngine``: ``instance_count × max_concurrency_per_instance`` worker processes here.

The job's run is the shared :class:`batchpoint.engines.scheduler.Scheduler` (slots, deadlines,
lost workers, the failure policy, shutdown); this module is only its transport, :class:`_PipeTransport`:
how a local worker process is started, fed over its pipe, found dead and stopped.

Workers are started by a launcher (``engines/launchers.py``): by default forks of a forkserver that
has pandas / MLflow / scikit-learn imported already, so a worker is ready in milliseconds plus the
model's own load time; or ``python -m batchpoint.worker`` in a given interpreter. Engine and
worker speak the JSON worker protocol (``worker/protocol.py``). Each worker calls ``init()`` once
and then scores mini-batch after mini-batch. While every worker is busy and enough work is left
for all of them, each gets its next mini-batch ahead, so it starts it without a round trip through
the engine (``sends_ahead``: :meth:`Scheduler._send_ahead`).

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
import select
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from batchpoint._internal.procfs import status_bytes
from batchpoint.engines.base import Engine, OutcomeSink, Sources
from batchpoint.engines import launchers
from batchpoint.engines.launchers import ForkserverLauncher, Launcher, SubprocessLauncher
from batchpoint.engines.planning import EngineJob, MiniBatch
from batchpoint.engines.sandbox import SandboxLauncher, check, isolation_of
from batchpoint.engines.policy import FailureKind, WorkerInitError, death_in_run, exit_text
from batchpoint.engines.scheduler import Event, Scheduler, Worker, WorkerTransport, log_name, log_path
from batchpoint.engines import warm
from batchpoint.engines.warm import POOL, WarmWorker
from batchpoint.outputs.base import is_segment_name
from batchpoint.worker import protocol
from batchpoint.worker.protocol import scratch_root

__all__ = ["LocalPoolEngine", "WorkerInitError", "warm_up"]

log = logging.getLogger(__name__)


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
    return status_bytes(pid, "VmHWM")


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
        log.info("scoring code runs fenced: each worker in a bubblewrap sandbox (docs/security.md); kept warm %gs "
                 "after a job for the deployment's next one (workers.warm_idle_s; 0: none kept)",
                 float(options.get("warm_idle_s") or 0))


def _bad_segment(segment: Any, suffix: str) -> str | None:
    """What is wrong with a ``done`` reply's ``segment`` (None: a segment name of this job's
    ``parts/``, a non-negative offset and length)."""
    if not isinstance(segment, dict):
        return f"a segment that is not an object ({type(segment).__name__})"
    name, offset, length = segment.get("file"), segment.get("offset"), segment.get("length")
    if not isinstance(name, str) or not is_segment_name(name, suffix):
        return f"the segment {name!r}, which is not a segment's file name (seg-<worker>-<pid>-<random>{suffix})"
    if type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
        return f"the byte range {offset!r}+{length!r} of segment {name}, which is not two non-negative integers"
    return None


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
        # fenced workers are kept warm after the job for the next one of the deployment (engines/warm.py)
        keep_warm = self.given is None and isinstance(launcher, SandboxLauncher) and warm.enabled(job)
        Scheduler(_PipeTransport(launcher, job, keep_warm), job, batches, on_outcome, stop, credentials).run()


class _PipeWorker:
    """A local worker process as the transport holds it: its process handle and connection, and
    what is known about its memory (named when it dies inside ``run()``)."""

    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc, self.conn = proc, conn
        self.peak_rss = 0  # bytes, as last sampled from /proc (VmHWM)
        self.oom_kills: tuple[str, int] | None = None  # (its memory cgroup's counter file, the count at start)
        self.warm: WarmWorker | None = None  # a worker that may be kept warm (engines/warm.py)
        self.state_file: str | None = None  # its state file when not the job's state/worker-<slot>


class _PipeTransport(WorkerTransport):
    """Worker processes on this machine (a launcher's), fed over a pipe or socket with the worker
    protocol's JSON frames; a busy worker's next mini-batch may wait in its pipe (``sends_ahead``)."""

    sends_ahead = True

    def __init__(self, launcher: Launcher, job: EngineJob, keep_warm: bool = False) -> None:
        self.launcher, self.job = launcher, job
        self.sampled = 0.0
        self.keep_warm = keep_warm
        self.key = warm.pool_key(job) if keep_warm else ""

    @property
    def state_dir(self) -> Path:
        """The workers' state files (``protocol.WorkerState``), beside ``parts/`` in the job folder."""
        return Path(self.job.parts_dir).parent / "state"

    def prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def start(self, slot: int, sources: dict[str, Any]) -> _PipeWorker:
        if self.keep_warm:
            return self._start_warm(slot, sources)
        state_file = self.state_dir / f"worker-{slot}"
        state_file.unlink(missing_ok=True)  # a new worker starts outside run()
        proc, conn = self.launcher.launch(slot, self.job.name, log_path(self.job, slot))
        handle = _PipeWorker(proc, conn)
        job = self.job
        config = protocol.job_config(
            name=job.name, worker_id=slot, scorer=job.scorer, sources=sources, parts_dir=job.parts_dir,
            logs_dir=job.logs_dir, output_action=job.output_action, logging_level=job.logging_level,
            environment=job.environment, server_pid=os.getpid(),  # the worker ends itself when this process dies
            state_file=str(state_file), segments=True)  # one part file per worker (outputs/base.py Segment)
        config.update(self.launcher.worker_config(job, slot))  # its own folders (and sandbox: no server pid)
        self._send(handle, protocol.start(config))
        return handle

    def _start_warm(self, slot: int, sources: dict[str, Any]) -> _PipeWorker:
        """A parked worker of this job's key (init() skipped), else a cold one that can be parked."""
        worker = POOL.take(self.key)
        if worker is None:
            python_exe = getattr(self.launcher, "python_exe", None) or sys.executable
            worker = POOL.launch(self.job, python_exe)
            message = protocol.start(worker.config(self.job, slot, sources))
        else:
            message = protocol.next_job(worker.config(self.job, slot, sources))
        assert worker.conn is not None
        handle = _PipeWorker(worker.proc, worker.conn)
        handle.warm, handle.state_file = worker, str(worker.state_file)
        POOL.send_job(worker, message, log_path(self.job, slot))
        return handle

    @staticmethod
    def _send(handle: _PipeWorker, message: dict[str, Any]) -> bool:
        try:
            handle.conn.send_bytes(protocol.encode(message))
            return True
        except OSError:  # it died; poll() or gone() reports it
            return False

    def send(self, w: Worker, message: dict[str, Any]) -> None:
        if w.handle.warm is not None:  # the files of local stores linked into its exchange folder
            linked = w.handle.warm.batch_message(self.job, message)
            if linked is None:  # handed to its link helper, which passes it on
                return
            message = linked
        self._send(w.handle, message)

    def outcome(self, w: Worker, batch: MiniBatch, reply: Event) -> tuple[int, dict[str, Any] | None, int]:
        rows, error, missing = super().outcome(w, batch, reply)
        if error is None and reply.get("segment") is not None:
            problem = _bad_segment(reply["segment"], self.job.writer().part_suffix)
            if problem is not None:  # never a path the server would sync or read: the mini-batch fails
                return 0, {"type": "ProtocolError", "where": None, "traceback": "", "kind": "platform",
                           "message": f"the worker's reply for mini-batch {batch.key} names {problem}; install the "
                                      "same Batchpoint version in the server's and the worker's environments"}, 0
        if w.handle.warm is not None:  # its part moves (its segment is linked) into the job's parts/ before it counts
            segment = (reply.get("segment") or {}).get("file") if error is None else None
            moved = w.handle.warm.done(self.job, batch.key, error, segment)
            if moved is not None:
                return 0, moved, 0
        return rows, error, missing

    def alive(self, w: Worker) -> bool:
        # asked before each mini-batch sent ahead: a forkserver child's is_alive() builds a selector
        # on its sentinel every time; one poll(2) of the sentinel (readable once it exited) is enough
        sentinel = getattr(w.handle.proc, "sentinel", None)
        if sentinel is None or not hasattr(select, "poll"):
            return bool(w.handle.proc.is_alive())
        poller = select.poll()
        poller.register(sentinel, select.POLLIN)
        return not poller.poll(0)

    def describe(self, w: Worker) -> str:
        return f"the worker (pid {w.handle.proc.pid})"

    def poll(self, workers: list[Worker], timeout: float) -> Iterator[tuple[Worker, Event]]:
        # one poll(2) on the connections (what multiprocessing's wait() does, without building a
        # selector on every call: the loop turns once per mini-batch, thousands of times a job)
        if not hasattr(select, "poll"):  # no poll(2) here (Windows)
            ready_conns = wait([w.handle.conn for w in workers], timeout=timeout)
            ready = {conn.fileno() for conn in ready_conns}
        else:
            poller = select.poll()
            linkers: dict[int, Worker] = {}  # warm workers' link helpers: the files they would not link
            for w in workers:
                poller.register(w.handle.conn.fileno(), select.POLLIN)
                fd = w.handle.warm.linker_fd() if w.handle.warm is not None else None
                if fd is not None:
                    poller.register(fd, select.POLLIN)
                    linkers[fd] = w
            # in ms, rounded up (0 only for 0: never a busy loop); a hang-up or error counts: EOF next
            ready = {fd for fd, _ in poller.poll(int(-(-timeout * 1000 // 1)) if timeout > 0 else 0)}
            for fd in ready & linkers.keys():  # before the replies: a refusal precedes its mini-batch's
                w = linkers[fd]
                if not w.handle.warm.read_linker() and w.handle.proc.is_alive():
                    w.handle.proc.kill()  # frames it held may be lost: the worker's mini-batches are retried
        for w in workers:
            if w.handle.conn.fileno() in ready:
                yield w, self._receive(w)

    def _receive(self, w: Worker) -> Event:
        try:
            data = w.handle.conn.recv_bytes()
        except (EOFError, OSError):
            return {"type": "lost", "error": self._death_error(w)}
        msg = protocol.decode(data, peer=f"worker of slot {w.slot} of job {self.job.name}")
        if msg["type"] == "ready":
            w.handle.oom_kills = _oom_counter(w.handle.proc.pid)
        return msg

    def gone(self, w: Worker) -> dict[str, Any] | None:
        if not w.handle.proc.is_alive() and not w.handle.conn.poll():
            return self._death_error(w)
        return None

    def sample(self, workers: list[Worker]) -> None:
        """Note the peak memory of each busy worker (every :data:`MEMORY_SAMPLE_S`): what it held is
        named if it dies in run() (the process is gone by then)."""
        now = time.monotonic()
        if now - self.sampled < MEMORY_SAMPLE_S:
            return
        self.sampled = now
        for w in workers:
            if w.batch is not None:
                w.handle.peak_rss = max(w.handle.peak_rss, _vm_hwm(w.handle.proc.pid))

    def _died_in_run(self, w: Worker) -> bool:
        state_file = w.handle.state_file or str(self.state_dir / f"worker-{w.slot}")
        return w.batch is not None and w.ready and protocol.WorkerState.read(state_file) == protocol.WorkerState.IN_RUN

    def _death_error(self, w: Worker) -> dict[str, Any]:
        proc = w.handle.proc
        proc.join(timeout=1)
        if self._died_in_run(w):  # in the scoring code: the mini-batch's failure (kind user)
            assert w.batch is not None
            memory: dict[str, Any] = {"peak_rss": max(w.handle.peak_rss, 0)}
            oom_kills = w.handle.oom_kills
            if oom_kills is not None:
                count = _oom_count(oom_kills[0])
                memory["oom_kills"] = (count or 0) - oom_kills[1]
                memory["limit"] = _memory_limit(oom_kills[0])
                if memory["oom_kills"]:  # what the cgroup held at its peak (the kill came at its limit)
                    memory["peak_rss"] = max(memory["peak_rss"], _cgroup_peak(oom_kills[0]) or 0)
            return death_in_run(w.slot, w.batch.key, _worker_exitcode(proc), log_name(self.job, w.slot), memory)
        where = f"mini-batch {w.batch.key}" if w.batch else "no mini-batch"
        return {"type": "WorkerLost", "where": None, "kind": FailureKind.PLATFORM.value, "message":
                f"the worker process of slot {w.slot} died while scoring {where} (exit code "
                f"{exit_text(proc.exitcode)}); see the worker log {log_path(self.job, w.slot)}"}

    def kill(self, w: Worker) -> int | None:
        proc = w.handle.proc
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        w.handle.conn.close()
        if w.handle.warm is not None:  # never kept: its exchange folder goes with it
            self._boot_log(w)
            w.handle.warm.remove()
        return proc.exitcode

    def _boot_log(self, w: Worker) -> None:
        """What a warm-capable worker wrote before it had the job's log (an import error): into the log."""
        if w.ready or w.handle.warm is None:
            return
        try:
            text = w.handle.warm.boot_log.read_text(errors="replace")
        except OSError:
            return
        if text:
            with open(log_path(self.job, w.slot), "a") as out:
                out.write(text)

    def shutdown(self, workers: list[Worker]) -> None:
        """Idle workers are asked to stop; busy ones (a cancel, a failed job, the server closing:
        their result would not be recorded) are killed at once, even inside user code."""
        kept = [w for w in workers if w.handle.warm is not None and w.batch is None and w.handle.proc.is_alive()]
        for w in kept:  # parked for the next job of this deployment (engines/warm.py)
            if w.ready:
                POOL.park(w.handle.warm, self.job)
            else:  # still in init(): kept once it returns
                POOL.adopt(w.handle.warm, self.job)
        workers = [w for w in workers if w not in kept]
        for w in workers:
            if w.batch is None and w.handle.proc.is_alive():
                self._send(w.handle, protocol.stop())
            elif w.handle.proc.is_alive():
                w.handle.proc.kill()
        deadline = time.monotonic() + 3
        for w in workers:
            proc = w.handle.proc
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            w.handle.conn.close()
            if w.handle.warm is not None:
                self._boot_log(w)
                w.handle.warm.remove()
        # what the workers downloaded, also a killed worker's (its own clean-up never ran)
        shutil.rmtree(scratch_root(self.job.parts_dir), ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        # a part a killed worker was writing (a writer that cannot append writes a part per mini-batch);
        # a killed worker's segment stays: the ranges the done log names are read, its torn tail never
        for tmp in Path(self.job.parts_dir).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
