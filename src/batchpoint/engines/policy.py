"""The one failure policy every engine applies: retries, timeouts, splitting, init deaths.

Every failure of a mini-batch carries a *kind*:

========== ============================================================================
kind       what failed
========== ============================================================================
user       the scoring code raised in ``run()``, returned a type other than a DataFrame or a
           list/array, or its worker died while ``run()`` ran (exited, or was killed)
input      a file could not be read or parsed (a reader error), or it was not found in
           storage when the worker fetched it (listed, then removed)
timeout    the mini-batch passed ``retry_settings.timeout``; its worker was killed
platform   the worker process was lost outside ``run()`` (idle, between mini-batches, fetching
           files), a storage fault
           while fetching other than not-found, the platform's own writes failed (a full
           disk writing a part), an unexpected error of the worker itself
========== ============================================================================

What :meth:`FailurePolicy.on_failure` decides (``attempt`` starts at 1):

========================= ===================================== ===================================
kind                      while retries are left                retries spent
========================= ===================================== ===================================
user / input / timeout    ``attempt <= max_retries``: RETRY     more than one file: SPLIT into one
                          with ``attempt + 1``                  mini-batch per file (each on its
                                                                last attempt); one file: REPORT —
                                                                a file failure, charged to
                                                                ``error_threshold``
platform                  fewer than ``MAX_PLATFORM_FAILURES``  FAIL_JOB: :class:`PlatformError`
                          (3) in a row on this mini-batch:      naming the mini-batch, its files,
                          RETRY the same attempt after          the location and the cause. Never
                          ``PLATFORM_RETRY_DELAY_S × 2^(n-1)``  charged to ``error_threshold`` and
                          (on a new worker when it was lost)    never reported as a file failure
========================= ===================================== ===================================

A user/input/timeout failure resets the mini-batch's platform count ("in a row").

A worker that dies *while its ``run()`` runs* (:func:`death_in_run`) fails that mini-batch with
kind **user** — retried, then split, then charged to ``error_threshold`` like any failure of the
scoring code, the job going on — when the death is the scoring code's own: it exited by itself
(``os._exit``, ``sys.exit``: its exit code), crashed (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL), or
the kernel's OOM killer killed it (its memory cgroup counted an OOM kill). A kill by another signal
(SIGKILL, SIGTERM: the OOM killer outside a cgroup the engine can read, or an operator) cannot be
told from the platform's: it is first retried as a platform failure, and if the worker is killed
inside ``run()`` on each of the ``MAX_PLATFORM_FAILURES`` platform retries too, the mini-batch is
the scoring code's failure (kind user, naming the signal and the memory the worker held; later
kills of it are at once) instead of the job's. A worker lost while idle, between mini-batches or
while fetching files stays kind platform.

A script's ``run()`` that returns fewer results than the mini-batch has files (``missing``) is a
success whose missing files are charged to ``error_threshold`` (Azure's rule: one element per
input scored); see ``jobs/progress.py``.

Worker deaths before ``init()`` returned (a crash no exception reports: ``os._exit``, a
segfault, the OOM killer, an operator's SIGKILL), and workers killed because ``init()`` did not
return within ``settings.init_timeout`` (:meth:`FailurePolicy.on_init_timeout`), are counted per
worker *slot*, in a row:
:meth:`FailurePolicy.on_worker_ready` resets the slot's count, and the ``MAX_INIT_DEATHS``-th (3)
death in a row on one slot fails the job (kind platform). Deaths spread over a long job, each
followed by a worker that became ready, never fail it, and finished mini-batches are never
discarded (they are already recorded). ``init()`` *raising* is the user's error and fails the
job at once (:class:`WorkerInitError`). When the last of those deaths was an ``init()`` past its
limit, the job fails as the scoring code's (:class:`InitTimeoutError`, kind user) naming
``init()``, the limit and the worker's log.
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchpoint.engines.planning import MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.exceptions import JobError, PlatformError, UserCodeError

__all__ = ["Action", "Decision", "FailureKind", "FailurePolicy", "InitTimeoutError", "WorkerInitError",
           "MAX_INIT_DEATHS", "MAX_PLATFORM_FAILURES", "PLATFORM_RETRY_DELAY_S", "death_in_run", "exit_text",
           "init_phase_message"]

MAX_PLATFORM_FAILURES = 3  # platform failures in a row of one mini-batch that are retried
PLATFORM_RETRY_DELAY_S = 0.2  # doubled after each platform failure in a row
MAX_INIT_DEATHS = 3  # worker deaths in init() in a row on one slot that fail the job


class FailureKind(str, enum.Enum):
    USER = "user"
    INPUT = "input"
    PLATFORM = "platform"
    TIMEOUT = "timeout"

    @classmethod
    def of(cls, error: dict[str, Any]) -> FailureKind:
        """The kind of an outcome's error dict (``user`` when it names none: older workers)."""
        try:
            return cls(error.get("kind") or "user")
        except ValueError:
            return cls.PLATFORM

    @property
    def charged(self) -> bool:
        """Whether a final failure of this kind counts toward ``error_threshold``."""
        return self is not FailureKind.PLATFORM


class Action(str, enum.Enum):
    RETRY = "retry"  # put ``batches`` (one) back, after ``delay_s``
    SPLIT = "split"  # put ``batches`` (one per file) back
    REPORT = "report"  # the final outcome: report the failure
    FAIL_JOB = "fail_job"  # raise ``error`` from the engine's run


@dataclass(frozen=True)
class Decision:
    action: Action
    batches: tuple[MiniBatch, ...] = ()
    delay_s: float = 0.0
    error: JobError | None = None


class WorkerInitError(UserCodeError):
    """init() of the scorer raised in a worker: the job cannot run (kind user)."""

    def __init__(self, error: dict[str, Any]) -> None:
        where = f" ({error['where']})" if error.get("where") else ""
        super().__init__(f"init() failed: {error['type']}: {error['message']}{where}",
                         details={"error": error, "kind": FailureKind.USER.value})
        self.error = error


class InitTimeoutError(UserCodeError):
    """init() did not return within ``settings.init_timeout`` on one worker slot, ``MAX_INIT_DEATHS``
    times in a row (kind user)."""


def init_phase_message(workers: int) -> str:
    """What ``job stream`` shows while the workers' ``init()`` runs."""
    return f"running init() on {workers} worker{'s' if workers != 1 else ''}"


def describe_files(batch: MiniBatch, limit: int = 3) -> str:
    names = [f.name for f in batch.files[:limit]]
    more = f" and {len(batch.files) - limit} more" if len(batch.files) > limit else ""
    return ", ".join(names) + more


class FailurePolicy:
    """One job's failure decisions (see the module docstring). One instance per engine run."""

    def __init__(self, retry: RetryPolicy) -> None:
        self.retry = retry
        self.init_deaths: dict[int, int] = {}  # slot -> deaths before init() returned, in a row

    def on_failure(self, batch: MiniBatch, error: dict[str, Any]) -> Decision:
        error = self.classify(batch, error)
        if error.get("kills_run") and not batch.kills_run:  # from now on a kill in its run() is the user's
            batch = MiniBatch(batch.index, batch.files, batch.sub, batch.attempt, batch.pieces, kills_run=True)
        kind = FailureKind.of(error)
        if kind is FailureKind.PLATFORM:
            return self._platform(batch, error)
        if batch.attempt <= self.retry.max_retries:
            return Decision(Action.RETRY, (batch.retry(),))
        if len(batch.files) > 1:
            return Decision(Action.SPLIT, tuple(batch.split(final_attempt=self.retry.max_retries + 1)))
        return Decision(Action.REPORT)

    @staticmethod
    def classify(batch: MiniBatch, error: dict[str, Any]) -> dict[str, Any]:
        """``error`` as it counts for ``batch``: a kill inside ``run()`` that looked like the
        platform's (``in_run``) is the scoring code's (kind user) once the mini-batch's worker was
        killed there on every platform retry, or at once when it already was (``kills_run``)."""
        if not error.get("in_run") or FailureKind.of(error) is not FailureKind.PLATFORM:
            return error
        if batch.kills_run:
            return {**error, "kind": FailureKind.USER.value, "kills_run": True, "message": error["message"] +
                    "; this mini-batch killed its worker inside run() before, so it counts as the scoring "
                    "code's failure (most likely it needs more memory than the worker may use)"}
        if batch.platform_failures + 1 > MAX_PLATFORM_FAILURES:
            return {**error, "kind": FailureKind.USER.value, "kills_run": True, "message": error["message"] +
                    f"; its worker was killed inside run() {batch.platform_failures + 1} times in a row, so it "
                    "counts as the scoring code's failure (most likely it needs more memory than the worker may "
                    "use), not the platform's: the job goes on under error_threshold"}
        return error

    def _platform(self, batch: MiniBatch, error: dict[str, Any]) -> Decision:
        failures = batch.platform_failures + 1
        if failures <= MAX_PLATFORM_FAILURES:
            return Decision(Action.RETRY, (batch.retry_platform(),),
                            delay_s=PLATFORM_RETRY_DELAY_S * 2 ** (failures - 1))
        message = (f"mini-batch {batch.key} ({describe_files(batch)}) failed {failures} times in a row on the "
                   f"platform, not in the scoring code: {error.get('type')}: {error.get('message')}. "
                   "The job stopped; its finished mini-batches are kept. Fix the cause (free disk space, "
                   "storage reachable, enough memory for a worker) and invoke again.")
        return Decision(Action.FAIL_JOB, error=PlatformError(message, details={
            "mini_batch": batch.key, "files": [f.path for f in batch.files], "cause": error}))

    def settle(self, batch: MiniBatch, rows: int, error: dict[str, Any] | None, seconds: float,
               on_outcome: Callable[[MiniBatchOutcome], None],
               note: Callable[[str], None], missing: int = 0,
               segment: tuple[str, int, int] | None = None) -> list[tuple[float, MiniBatch]]:
        """Carry out what a mini-batch's end leads to, the same way in every engine: report a success
        or a final failure through ``on_outcome``; raise the job's error (FAIL_JOB); note a platform
        retry with ``note`` (a line in the worker's log). Returns the mini-batches to put back, each
        with the monotonic time before which it must not start (empty when none). ``missing``: the
        files a success's ``run()`` returned no result for (charged, not retried); ``segment``: where a
        success's rows are in its worker's segment (``MiniBatchOutcome.segment``)."""
        if error is None:
            on_outcome(MiniBatchOutcome(batch, rows=rows, seconds=seconds, missing=min(missing, len(batch.files)),
                                        segment=segment))
            return []
        error = self.classify(batch, error)
        decision = self.on_failure(batch, error)
        if decision.action is Action.FAIL_JOB:
            assert decision.error is not None
            raise decision.error
        if decision.action is Action.REPORT:
            on_outcome(MiniBatchOutcome(batch, error=error, seconds=seconds))
            return []
        if FailureKind.of(error) is FailureKind.PLATFORM:
            note(f"mini-batch {batch.key} (attempt {batch.attempt}): platform failure, retried "
                 f"(platform retry {batch.platform_failures + 1} of {MAX_PLATFORM_FAILURES}): "
                 f"{error.get('type')}: {error.get('message')}")
        not_before = time.monotonic() + decision.delay_s
        return [(not_before, b) for b in decision.batches]

    def on_worker_ready(self, slot: int) -> None:
        self.init_deaths.pop(slot, None)

    def on_init_timeout(self, slot: int, timeout_s: float, log_path: str) -> None:
        """Count a worker killed because its init() passed ``settings.init_timeout``, like a death
        in init(); raise :class:`InitTimeoutError` on the ``MAX_INIT_DEATHS``-th in a row on ``slot``."""
        deaths = self.init_deaths.get(slot, 0) + 1
        self.init_deaths[slot] = deaths
        if deaths >= MAX_INIT_DEATHS:
            raise InitTimeoutError(
                f"init() of the scoring code did not return within settings.init_timeout ({timeout_s:g} s) on "
                f"worker slot {slot}, {deaths} times in a row; each time the worker was killed. See what init() "
                f"printed last in the worker log {log_path}; if init() needs longer, raise settings.init_timeout "
                "(deployment YAML settings.init_timeout, or init_timeout=... in the SDK)",
                details={"kind": FailureKind.USER.value, "slot": slot, "init_timeout": timeout_s, "log": log_path})

    def on_init_death(self, slot: int, exitcode: int | None, log_path: str) -> None:
        """Count a worker that died before its init() returned; raise PlatformError on the
        ``MAX_INIT_DEATHS``-th death in a row on ``slot``."""
        deaths = self.init_deaths.get(slot, 0) + 1
        self.init_deaths[slot] = deaths
        if deaths >= MAX_INIT_DEATHS:
            raise PlatformError(
                f"the worker process of slot {slot} died before init() returned {deaths} times in a row "
                f"(last exit code {exit_text(exitcode)}); nothing in init() raised, so the process was killed "
                f"or crashed (the OOM killer, a segfault, os._exit): see the worker log {log_path}",
                details={"slot": slot, "exit_code": exitcode, "log": log_path})

    @staticmethod
    def charged(error: dict[str, Any]) -> bool:
        """Whether a reported failure counts toward ``error_threshold``."""
        return FailureKind.of(error).charged


#: signals a process gets from its own faults (a crash in the scoring code or a library it called)
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})


def death_in_run(slot: int, key: str, exitcode: int | None, log_path: str,
                 memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error of a mini-batch whose worker died while its ``run()`` ran: kind user when it
    exited by itself (``exitcode`` >= 0), crashed (:data:`CRASH_SIGNALS`) or was OOM-killed
    (``memory["oom_kills"]``: kills its cgroup counted meanwhile, ``limit``: its memory limit);
    for any other signal kind platform with ``in_run`` (see :meth:`FailurePolicy.classify`).
    ``memory["peak_rss"]``: the most the worker held, as last sampled (bytes)."""
    memory = memory or {}
    held = f"; it held at least {memory['peak_rss'] / 2**20:.0f} MiB (its peak RSS when last sampled)" \
        if memory.get("peak_rss") else ""
    if memory.get("oom_kills") and memory.get("peak_rss"):
        held = f"; its cgroup held {memory['peak_rss'] / 2**20:.0f} MiB at its peak"
    kind, in_run = FailureKind.USER, False
    if exitcode is not None and exitcode >= 0:
        how = (f"exited by itself with exit code {exitcode} (os._exit() or sys.exit() in the scoring code, or a "
               f"library it called ended the process){held}")
        death = "exited"
    else:
        signum = -exitcode if exitcode is not None else None
        try:
            name = signal.Signals(signum).name if signum is not None else "an unknown signal"
        except ValueError:
            name = f"signal {signum}"
        if memory.get("oom_kills"):
            limit = f" (its limit: {memory['limit'] / 2**20:.0f} MiB)" if memory.get("limit") else ""
            how = (f"was killed by the kernel's OOM killer (signal {signum}, {name}): its memory cgroup ran out of "
                   f"memory{limit}{held}")
            death = "oom"
        elif signum is not None and signum in CRASH_SIGNALS:
            how = f"crashed (killed by signal {signum}, {name}: a fault in the scoring code or a library it called){held}"
            death = "crashed"
        else:
            how = f"was killed by signal {signum} ({name})" if signum is not None else "was killed"
            if signum == signal.SIGKILL:
                how += " (the kernel's OOM killer sends SIGKILL when memory runs out; or another process killed it)"
            how += held
            death, kind, in_run = "killed", FailureKind.PLATFORM, True
    error = {"type": "WorkerDied", "where": None, "traceback": "", "kind": kind.value, "death": death,
             "exit_code": exitcode, "message": f"the worker process of slot {slot} {how} while run() was scoring "
                                               f"mini-batch {key}; see the worker log {log_path}"}
    if in_run:
        error["in_run"] = True
    return error


def exit_text(exitcode: int | None) -> str:
    """``-9: killed by SIGKILL`` for a signal, else the code as it is."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"{exitcode}: killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return str(exitcode)
