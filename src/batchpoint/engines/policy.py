"""The one failure policy every engine applies: retries, timeouts, splitting, init deaths.

Every failure of a mini-batch carries a *kind*:

========== ============================================================================
kind       what failed
========== ============================================================================
user       the scoring code raised in ``run()``
input      a file could not be read or parsed (a reader error), or it was not found in
           storage when the worker fetched it (listed, then removed)
timeout    the mini-batch passed ``retry_settings.timeout``; its worker was killed
platform   the worker process was lost (SIGKILL, OOM killer, crash), a storage fault
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

Worker deaths before ``init()`` returned (a crash no exception reports: ``os._exit``, a
segfault, the OOM killer, an operator's SIGKILL) are counted per worker *slot*, in a row:
:meth:`FailurePolicy.on_worker_ready` resets the slot's count, and the ``MAX_INIT_DEATHS``-th (3)
death in a row on one slot fails the job (kind platform). Deaths spread over a long job, each
followed by a worker that became ready, never fail it, and finished mini-batches are never
discarded (they are already recorded). ``init()`` *raising* is the user's error and fails the
job at once (:class:`WorkerInitError`).
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

__all__ = ["Action", "Decision", "FailureKind", "FailurePolicy", "WorkerInitError",
           "MAX_INIT_DEATHS", "MAX_PLATFORM_FAILURES", "PLATFORM_RETRY_DELAY_S", "exit_text"]

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
        kind = FailureKind.of(error)
        if kind is FailureKind.PLATFORM:
            return self._platform(batch, error)
        if batch.attempt <= self.retry.max_retries:
            return Decision(Action.RETRY, (batch.retry(),))
        if len(batch.files) > 1:
            return Decision(Action.SPLIT, tuple(batch.split(final_attempt=self.retry.max_retries + 1)))
        return Decision(Action.REPORT)

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
               note: Callable[[str], None]) -> list[tuple[float, MiniBatch]]:
        """Carry out what a mini-batch's end leads to, the same way in every engine: report a success
        or a final failure through ``on_outcome``; raise the job's error (FAIL_JOB); note a platform
        retry with ``note`` (a line in the worker's log). Returns the mini-batches to put back, each
        with the monotonic time before which it must not start (empty when none)."""
        if error is None:
            on_outcome(MiniBatchOutcome(batch, rows=rows, seconds=seconds))
            return []
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


def exit_text(exitcode: int | None) -> str:
    """``-9: killed by SIGKILL`` for a signal, else the code as it is."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"{exitcode}: killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return str(exitcode)
