"""What every engine's dispatch loop shares: the queue of mini-batches still to hand out, and the
renewed storage credentials a worker gets along with its next mini-batch.

:class:`WorkQueue` hands out, in this order: retries whose delay has passed (the failure policy's
``RETRY``/``SPLIT`` decisions, ``engines/policy.py``), then mini-batches taken ahead from the
planner (:meth:`WorkQueue.take_ahead`), then the planner's next one. It is drained when the planner
is exhausted and nothing waits; :meth:`WorkQueue.next_wait` is how long the loop may sleep before a
retry is due. Engines differ in how they reach their workers (pipes, Ray actors), never in what
they hand out next.

:class:`LogCap` keeps each worker's log (``logs/worker-<n>.log``) under
``EngineJob.log_max_bytes`` (``jobs.worker_log_max_bytes``, 20 MiB by default): past it, the log is
copied to ``worker-<n>.log.1`` (replacing the older copy) and truncated in place, and starts again
with a line that says so. The worker and every process it started append to the same file
(``O_APPEND``), so all of them are capped, whatever they write with (``print``, C code, a child
process); a log may pass the limit by what is written between two checks, and what is written
between the copy and the truncation is lost.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from batchpoint.engines.planning import MiniBatch
from batchpoint.engines.policy import init_phase_message

__all__ = ["LOG_CHECK_S", "LogCap", "WorkQueue", "fresh_sources"]

#: how often :class:`LogCap` looks at the size of the workers' logs
LOG_CHECK_S = 0.25


class WorkQueue:
    def __init__(self, batches: Iterator[MiniBatch]) -> None:
        self.batches = batches
        self.retry: list[tuple[float, MiniBatch]] = []  # (not before, batch), in order
        self.ahead: deque[MiniBatch] = deque()  # taken from ``batches``, not handed out yet
        self.exhausted = False

    def next(self) -> MiniBatch | None:
        """The next mini-batch to hand out now, or None (nothing due yet, or nothing left)."""
        now = time.monotonic()
        for i, (not_before, batch) in enumerate(self.retry):
            if not_before <= now:
                del self.retry[i]
                return batch
        if self.ahead:
            return self.ahead.popleft()
        return self._take()

    def _take(self) -> MiniBatch | None:
        if self.exhausted:
            return None
        batch = next(self.batches, None)
        if batch is None:
            self.exhausted = True
        return batch

    def take_ahead(self, count: int) -> int:
        """Take mini-batches from the planner until ``count`` wait in :attr:`ahead`; how many wait."""
        while len(self.ahead) < count:
            batch = self._take()
            if batch is None:
                break
            self.ahead.append(batch)
        return len(self.ahead)

    def put_back(self, retries: list[tuple[float, MiniBatch]]) -> None:
        """The failure policy's mini-batches to hand out again, each after its time."""
        self.retry.extend(retries)

    def put_first(self, batch: MiniBatch) -> None:
        """A mini-batch handed out but never started (its worker was lost): next, as it was."""
        self.ahead.appendleft(batch)

    def drained(self) -> bool:
        return self.exhausted and not self.retry and not self.ahead

    def next_wait(self, now: float) -> list[float]:
        """Seconds until each waiting retry is due (for the loop's sleep)."""
        return [t - now for t, _ in self.retry]


class _HasSources(Protocol):
    sources_version: int


def fresh_sources(credentials: Callable[[], tuple[int, dict[str, Any]]] | None,
                  holder: _HasSources) -> dict[str, Any] | None:
    """The current storage specs when ``holder`` (a worker, an actor) has an older set (noting the
    version it gets), else None: renewed credentials go along with a worker's next mini-batch."""
    if credentials is None:
        return None
    version, sources = credentials()
    if version == holder.sources_version:
        return None
    holder.sources_version = version
    return sources


class LogCap:
    """Cuts the workers' logs at ``max_bytes`` (see the module docstring); :meth:`check` from the
    engine's loop (it looks every :data:`LOG_CHECK_S` at most)."""

    def __init__(self, paths: list[Path], max_bytes: int) -> None:
        self.paths, self.max_bytes = paths, max_bytes
        self.cuts: dict[Path, int] = {}
        self.checked = 0.0

    def check(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.checked < LOG_CHECK_S:
            return
        self.checked = now
        for path in self.paths:
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            if size > self.max_bytes:
                self.cut(path, size)

    def cut(self, path: Path, size: int) -> None:
        count = self.cuts.get(path, 0) + 1
        try:
            shutil.copyfile(path, f"{path}.1")
            kept = f"the {size} bytes before this line are in {path.name}.1"
        except OSError as exc:
            kept = f"the {size} bytes before this line could not be kept ({exc.strerror or exc})"
        try:
            os.truncate(path, 0)
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            with open(path, "a") as out:
                out.write(f"{stamp} WARNING batchpoint.engine: this worker's log passed its limit of {self.max_bytes} "
                          f"bytes (jobs.worker_log_max_bytes) and was cut, {count} time(s) so far: {kept}; anything "
                          "older is gone\n")
            self.cuts[path] = count
        except OSError:  # a full disk or a vanished folder: tried again at the next check
            pass


class InitPhase:
    """The ``init()`` phase of a job's workers, as both engines note it (``EngineJob.on_phase``): it
    starts when the workers are started, finishes when every slot's first worker has run
    ``init()``, and ends with the job if that never happened (finished when the work ran out
    first, else failed). A note for the user: an error while recording it never stops the job."""

    def __init__(self, job: Any, log: Any) -> None:
        self.job, self.log = job, log
        self.waiting: set[int] = set()  # slots whose first worker has not run init() yet
        self.started = 0.0

    def start(self) -> None:
        self.waiting, self.started = set(range(self.job.workers)), time.monotonic()
        self.note("started", init_phase_message(self.job.workers), workers=self.job.workers)

    def ready(self, slot: int) -> None:
        """Slot ``slot``'s worker ran init(): the phase ends when every slot's first one has."""
        if slot not in self.waiting:
            return
        self.waiting.discard(slot)
        if not self.waiting:
            seconds, workers = self._seconds(), self.job.workers
            self.note("finished", f"scoring mini-batches (init() took {seconds:g} s on {workers} "
                      f"worker{'s' if workers != 1 else ''})", workers=workers, seconds=seconds)

    def end(self, ran_out_of_work: bool) -> None:
        """The job's workers are gone: a phase still open ends here."""
        if not self.waiting:
            return
        ready, self.waiting = self.job.workers - len(self.waiting), set()
        self.note("finished" if ran_out_of_work else "failed",
                  f"init() finished on {ready} of {self.job.workers} workers before the job "
                  f"{'ran out of work' if ran_out_of_work else 'stopped'}", workers=self.job.workers,
                  seconds=self._seconds())

    def note(self, state: str, message: str, **data: Any) -> None:
        if self.job.on_phase is None:
            return
        try:
            self.job.on_phase(state, message, **data)
        except Exception:  # noqa: BLE001 - a note for the user; never what stops the job
            self.log.warning("job %s: could not record the init() phase", self.job.name, exc_info=True)

    def _seconds(self) -> float:
        return round(time.monotonic() - self.started, 2)
