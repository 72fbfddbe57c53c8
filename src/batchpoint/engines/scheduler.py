"""The one scheduler every engine runs a job with; an engine supplies only a :class:`WorkerTransport`.

:class:`Scheduler` owns one job's run on ``job.workers`` worker *slots*: it starts a worker in each
slot, hands out mini-batches (``dispatch.WorkQueue``: retries that are due, then mini-batches taken
ahead, then the planner's next), waits for the workers' replies, enforces the deadlines
(``retry_settings.timeout`` per mini-batch, ``settings.init_timeout`` per ``init()``), replaces a
lost worker in its slot, settles every mini-batch's end through the one failure policy
(``policy.FailurePolicy.settle``) and, at the end, has the transport shut the workers down. The
``init()`` phase is ``dispatch.InitPhase``; the workers' logs are capped by ``dispatch.LogCap``.

What differs between engines is only how a worker is reached — the transport:

========================= ================================================================================
``prepare()``             job-wide set-up before the first worker (a state folder; Ray: the scorer archive)
``start(slot, sources)``  start the worker of ``slot`` with the job's start config; its handle
``send(w, message)``      feed the protocol's ``batch`` message (a pipe; Ray: ``actor.run.remote``)
``poll(workers, t)``      wait at most ``t`` s; yield ``(worker, event)`` for what came back (below)
``outcome(w, b, reply)``  a ``done`` reply as ``(rows, error, missing)`` (Ray: stores the part it carries)
``segment(reply)``        where a success's rows are in its worker's segment, or None (the local pool)
``gone(w)``               the error of a worker that is gone without an event (a dead process), or None
``kill(w)``               end the worker now (a timeout, a loss); its exit code when known
``sample(workers)``       called on every turn of the loop (the local pool samples memory)
``shutdown(workers)``     the job's end: idle workers asked to stop, busy ones killed, scratch removed
========================= ================================================================================

Events are the worker protocol's replies as dicts — ``ready``, ``init_failed`` (``error``),
``done`` (``rows``, ``error``, ``missing``) — plus ``lost`` (``error``: the worker is gone; kind
platform, or the scoring code's when it died inside ``run()``, ``policy.death_in_run``) and
``job_failed`` (``exception``: the job cannot run, e.g. a node lacks the deployment's environment).
Any event may carry ``log``: text the worker wrote, appended to its ``logs/worker-<slot>.log`` here
first (a Ray actor's log lives on its node). An error a transport cannot recover from (Ray cannot
place an actor) may also be raised from ``poll``; either way it fails the job.

A transport with ``sends_ahead`` (the local pool: a worker's pipe queues messages) gets, while every
worker is busy and enough work is left for all of them, each busy worker's next mini-batch ahead,
so it starts it without a round trip through this loop (:meth:`Scheduler._send_ahead`): one, or up
to :data:`AHEAD_MAX` for a worker whose mini-batches take under :data:`AHEAD_FAST_S` (tiny files:
one round trip through this loop, waiting for the server's GIL behind the group commit and the
listing, took longer than such a mini-batch, and the worker sat idle).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from batchpoint.engines.base import OutcomeSink, Sources
from batchpoint.engines.dispatch import InitPhase, LogCap, WorkQueue, fresh_sources
from batchpoint.engines.planning import EngineJob, MiniBatch
from batchpoint.engines.policy import FailureKind, FailurePolicy, WorkerInitError
from batchpoint.worker import protocol

__all__ = ["AHEAD_FAST_S", "AHEAD_MAX", "Event", "Scheduler", "Worker", "WorkerTransport", "log_name", "log_path"]

log = logging.getLogger(__name__)

Event = dict[str, Any]

#: the longest the loop waits for a reply before it looks at its deadlines and the queue again
IDLE_WAIT_S = 0.2
#: how often the loop asks the transport whether a worker is gone without an event (a dead process
#: whose connection another process still holds open); a death shows as an event at once anyway
GONE_CHECK_S = 0.05
#: the most mini-batches a busy worker may have waiting in its connection, for one whose mini-batches
#: take under AHEAD_FAST_S (seconds, a moving average); one for every other worker. A short mini-batch
#: stuck behind one that turns slow waits at most that many short ones' time more (or is handed out
#: again when that one times out); a long one never waits behind another long one
AHEAD_MAX, AHEAD_FAST_S = 3, 0.02


def log_path(job: EngineJob, slot: int) -> Path:
    """The worker log of ``slot`` in the job folder (a server path)."""
    return Path(job.logs_dir) / f"worker-{slot}.log"


def log_name(job: EngineJob, slot: int) -> str:
    """The worker's log as the job's users know it (relative to the job: no server path)."""
    return f"logs/worker-{slot}.log (job {job.name})"


@dataclass
class Worker:
    """One worker slot's current worker, as the scheduler sees it; ``handle`` is the transport's."""

    slot: int
    handle: Any
    sources_version: int = 0  # the storage specs it holds (``dispatch.fresh_sources``)
    init_deadline: float = float("inf")  # when its init() must have returned (settings.init_timeout)
    ready: bool = False
    batch: MiniBatch | None = None  # the mini-batch it is scoring
    queued: deque[MiniBatch] = field(default_factory=deque)  # sent ahead, in order, after ``batch`` (sends_ahead)
    started: float = 0.0
    deadline: float = 0.0
    seconds: float = float("inf")  # how long its mini-batches take (a moving average): how many it gets ahead

    def ahead(self) -> int:
        """How many mini-batches it may have waiting behind the one it scores."""
        return AHEAD_MAX if self.seconds < AHEAD_FAST_S else 1


class WorkerTransport(abc.ABC):
    """How one engine starts, feeds and loses the workers of one job (see the module docstring)."""

    #: a busy worker may be sent its next mini-batch ahead (its messages queue in order)
    sends_ahead: bool = False
    #: what the server log calls a worker ("worker", "Ray worker")
    noun: str = "worker"

    def prepare(self) -> None:
        """Job-wide set-up, before the first worker starts."""

    @abc.abstractmethod
    def start(self, slot: int, sources: dict[str, Any]) -> Any:
        """Start the worker of ``slot`` (its ``init()`` runs now) with ``sources``; its handle."""

    @abc.abstractmethod
    def send(self, w: Worker, message: dict[str, Any]) -> None:
        """Hand ``w`` the protocol's ``batch`` message. A worker that died meanwhile is not an error
        here: ``poll`` or ``gone`` reports it."""

    @abc.abstractmethod
    def poll(self, workers: list[Worker], timeout: float) -> Iterator[tuple[Worker, Event]]:
        """Wait at most ``timeout`` seconds for replies; yield each as ``(worker, event)``."""

    def outcome(self, w: Worker, batch: MiniBatch, reply: Event) -> tuple[int, dict[str, Any] | None, int]:
        """A ``done`` reply for ``batch`` as (rows, error or None, files missing from run()'s result)."""
        return reply["rows"], reply["error"], int(reply.get("missing") or 0)

    def segment(self, reply: Event) -> tuple[str, int, int] | None:
        """Where a successful ``done`` reply's rows are in its worker's segment (``file``, ``offset``,
        ``length``; checked by :meth:`outcome`), or None: a part file of its own (no ``segment``)."""
        found = reply.get("segment")
        return None if found is None else (found["file"], int(found["offset"]), int(found["length"]))

    def gone(self, w: Worker) -> dict[str, Any] | None:
        """The error of ``w`` when it is gone without having said so (None: not gone, or not known)."""
        return None

    def alive(self, w: Worker) -> bool:
        return True

    def describe(self, w: Worker) -> str:
        """``w`` in a note of the engine's ("the worker (pid 12)", "the Ray actor")."""
        return "the worker"

    @abc.abstractmethod
    def kill(self, w: Worker) -> int | None:
        """End ``w`` now (also inside the scoring code); its exit code when known."""

    def sample(self, workers: list[Worker]) -> None:
        """Called on every turn of the loop (e.g. to note the memory of busy workers)."""

    @abc.abstractmethod
    def shutdown(self, workers: list[Worker]) -> None:
        """The run is over (done, failed, canceled): idle workers are asked to stop, busy ones are
        killed at once (their results would not be recorded), and what they left is removed."""


class Scheduler:
    """One job's run on one engine's workers (see the module docstring)."""

    def __init__(self, transport: WorkerTransport, job: EngineJob, batches: Iterator[MiniBatch],
                 on_outcome: OutcomeSink, stop: threading.Event, credentials: Sources | None = None) -> None:
        self.transport, self.job, self.on_outcome, self.stop = transport, job, on_outcome, stop
        self.credentials = credentials
        self.policy = FailurePolicy(job.policy)
        self.work = WorkQueue(batches)
        self.workers: dict[int, Worker] = {}
        self.init_phase = InitPhase(job, log)
        self.drained = False  # every mini-batch was handed out and finished
        self.gone_checked = 0.0  # when the workers were last asked after (GONE_CHECK_S)
        self.logs = LogCap([log_path(job, slot) for slot in range(job.workers)], job.log_max_bytes)

    def run(self) -> None:
        """Score every mini-batch; return when done or when ``stop`` is set; the workers are shut
        down however it ends (a job failure is raised after that)."""
        try:
            self.start()
            self.loop()
        finally:
            self.shutdown()

    # -- workers ------------------------------------------------------------------------------
    def start(self) -> None:
        self.transport.prepare()
        self.init_phase.start()
        for slot in range(self.job.workers):
            self.workers[slot] = self._spawn(slot)

    def _spawn(self, slot: int) -> Worker:
        version, sources = self.credentials() if self.credentials is not None else (0, self.job.sources)
        handle = self.transport.start(slot, sources)
        return Worker(slot, handle, sources_version=version, init_deadline=time.monotonic() + self.job.init_timeout_s)

    def _current(self, w: Worker) -> bool:
        return self.workers.get(w.slot) is w

    # -- work ---------------------------------------------------------------------------------
    def _assign(self) -> None:
        for w in self.workers.values():
            if w.ready and w.batch is None:
                batch = self.work.next()
                if batch is None:
                    return
                w.batch, w.started = batch, time.monotonic()
                w.deadline = w.started + self.job.policy.timeout_s
                self._send_batch(w, batch)
        if self.transport.sends_ahead:
            self._send_ahead()

    def _send_batch(self, w: Worker, batch: MiniBatch) -> None:
        files = [{"source": f.source, "path": f.path} for f in batch.files]
        self.transport.send(w, protocol.batch(batch.key, batch.index, batch.sub, batch.attempt, batch.pieces, files,
                                              fresh_sources(self.credentials, w)))

    def _send_ahead(self) -> None:
        """Send each busy worker its next mini-batch before it finishes the current one, so it
        starts it without waiting for a round trip through this loop (the message waits in its
        connection). Only while every worker is busy, at least one more mini-batch per worker is
        still to be handed out besides it, and no retry waits: a mini-batch sent ahead waits behind
        its worker's current one, which may be slow or stuck, so it must never be one another
        worker that comes free would have had. Its clock starts when the one before it is done.
        One ahead per worker, or up to :data:`AHEAD_MAX` for a worker whose mini-batches take under
        :data:`AHEAD_FAST_S` (``Worker.ahead``), handed out a round at a time: one more to
        each worker that may take one, then the next round."""
        if self.work.retry or any(not w.ready or w.batch is None for w in self.workers.values()):
            return  # a worker starting or idle gets the next one itself
        for _ in range(AHEAD_MAX):  # a round per place in the queues: each worker one at a time
            wanting = [w for w in self.workers.values() if len(w.queued) < w.ahead()]
            if not wanting:
                return
            self.work.take_ahead(self.job.workers + len(wanting))  # theirs, and one per worker left over
            for w in wanting:
                if len(self.work.ahead) <= self.job.workers:
                    return
                if self.transport.alive(w):
                    batch = self.work.ahead.popleft()
                    w.queued.append(batch)
                    self._send_batch(w, batch)

    def loop(self) -> None:
        while not self.stop.is_set():
            self._assign()
            busy = [w for w in self.workers.values() if w.batch is not None]
            if not busy and self.work.drained():
                self.drained = True
                return
            now = time.monotonic()
            waits = [w.deadline - now for w in busy] + self.work.next_wait(now) + [IDLE_WAIT_S]
            waits += [w.init_deadline - now for w in self.workers.values() if not w.ready]
            for w, event in self.transport.poll(list(self.workers.values()), max(0.0, min(waits))):
                if self._current(w):
                    self._receive(w, event)
            self._check_deadlines()
            self.transport.sample(list(self.workers.values()))
            self.logs.check()

    def _receive(self, w: Worker, event: Event) -> None:
        if event.get("log"):
            self.append_log(w.slot, event["log"])
        kind = event["type"]
        if kind == "ready":
            w.ready = True
            w.init_deadline = float("inf")
            self.policy.on_worker_ready(w.slot)
            self.init_phase.ready(w.slot)
        elif kind == "init_failed":
            raise WorkerInitError(event["error"])
        elif kind == "job_failed":  # the transport found the job cannot run (Ray: no environment on a node)
            raise event["exception"]
        elif kind == "lost":
            self._lost(w, event["error"])
        elif kind == "done":
            if w.batch is not None and event.get("key") not in (None, w.batch.key):
                # replies come in the order the mini-batches were sent: one for another means a message
                # was lost on the way (a warm worker's link helper that died); never count it as this one
                self._lost(w, {"type": "ProtocolError", "where": None, "traceback": "",
                               "kind": FailureKind.PLATFORM.value,
                               "message": f"the worker answered for mini-batch {event.get('key')} while mini-batch "
                                          f"{w.batch.key} was its next; a message to it was lost: it is replaced"})
                return
            batch, now = w.batch, time.monotonic()
            seconds = now - w.started
            w.seconds = seconds if w.seconds == float("inf") else 0.75 * w.seconds + 0.25 * seconds
            w.batch = w.queued.popleft() if w.queued else None  # the next one sent ahead has started
            if w.batch is not None:
                w.started, w.deadline = now, now + self.job.policy.timeout_s
            if batch is not None:
                rows, error, missing = self.transport.outcome(w, batch, event)
                self._finish(batch, rows, error, seconds, w.slot, missing,
                             self.transport.segment(event) if error is None else None)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        ask_gone = now - self.gone_checked >= GONE_CHECK_S  # not on every turn: a turn per mini-batch of tiny files
        if ask_gone:
            self.gone_checked = now
        for w in list(self.workers.values()):
            if not self._current(w):
                continue
            if not w.ready and now > w.init_deadline:
                self._init_timed_out(w)
            elif w.batch is not None and now > w.deadline:
                self._lost(w, {"type": "TimeoutError", "where": None, "traceback": "",
                               "kind": FailureKind.TIMEOUT.value, "message":
                               f"the mini-batch did not finish within the timeout of {self.job.policy.timeout_s:g}s "
                               "(retry_settings.timeout)"})
            elif ask_gone:
                error = self.transport.gone(w)
                if error is not None:
                    self._lost(w, error)

    def _init_timed_out(self, w: Worker) -> None:
        """``w``'s init() passed ``settings.init_timeout``: kill it, count it like a death in init()
        (the policy raises the job's error on the last one), start a new worker in its slot."""
        timeout = self.job.init_timeout_s
        self._note(w.slot, f"init() did not return within settings.init_timeout ({timeout:g} s): "
                           f"{self.transport.describe(w)} is killed")
        self.transport.kill(w)
        self.policy.on_init_timeout(w.slot, timeout, log_name(self.job, w.slot))
        log.warning("job %s %s %s replaced: init() passed %gs", self.job.name, self.transport.noun, w.slot, timeout)
        self.workers[w.slot] = self._spawn(w.slot)

    def _lost(self, w: Worker, error: dict[str, Any]) -> None:
        """End ``w`` (dead, or past its deadline), start a new worker in its slot, and settle its batch."""
        batch, seconds = w.batch, time.monotonic() - w.started
        for queued in reversed(w.queued):  # sent ahead, never started: handed out again first, as they were
            self.work.put_first(queued)
        w.queued.clear()
        exitcode = self.transport.kill(w)
        if not w.ready:  # died before init() returned: counted per slot, in a row (may fail the job)
            self.policy.on_init_death(w.slot, exitcode, str(log_path(self.job, w.slot)))
        log.warning("job %s %s %s replaced: %s", self.job.name, self.transport.noun, w.slot, error["message"])
        self.workers[w.slot] = self._spawn(w.slot)
        if batch is not None:
            self._finish(batch, 0, error, seconds, w.slot)

    def _finish(self, batch: MiniBatch, rows: int, error: dict[str, Any] | None, seconds: float, slot: int,
                missing: int = 0, segment: tuple[str, int, int] | None = None) -> None:
        if error is not None and error.get("type") == "WorkerDied":
            self._note(slot, f"mini-batch {batch.key} (attempt {batch.attempt}): {error['message']}")
        self.work.put_back(self.policy.settle(batch, rows, error, seconds, self.on_outcome,
                                              lambda text: self._note(slot, text), missing, segment))

    # -- logs -----------------------------------------------------------------------------------
    def append_log(self, slot: int, text: str) -> None:
        """Add ``text`` to the worker log of ``slot``; past ``EngineJob.log_max_bytes`` it is cut
        (``dispatch.LogCap``: one older copy, ``worker-<n>.log.1``)."""
        if not text:
            return
        try:
            path = log_path(self.job, slot)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as out:
                out.write(text)
                size = out.tell()
            if size > self.job.log_max_bytes:
                self.logs.cut(path, size)
        except OSError:  # a full disk: the server log has the notes; the part or the done log reports it
            pass

    def _note(self, slot: int, text: str) -> None:
        """A line of the engine's in the worker's log, where the user reads what happened to a mini-batch."""
        log.warning("job %s: %s", self.job.name, text)
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        self.append_log(slot, f"{stamp} WARNING batchpoint.engine: {text}\n")

    def shutdown(self) -> None:
        workers, self.workers = list(self.workers.values()), {}
        try:
            self.transport.shutdown(workers)
        finally:
            self.init_phase.end(ran_out_of_work=self.drained)  # the job ended before every worker ran init()
