"""A running job's progress: counts each mini-batch outcome, records failures with their kind and
attempt, and stops the job when ``error_threshold`` is passed.

Only failures of kind ``user``, ``input`` and ``timeout`` count toward ``error_threshold`` (and
``files_failed``); a ``platform`` failure (never reported as final by the shared policy, which fails
the job instead) is recorded but not charged. The job's ``error`` names the first charged failure
with a code by kind: ``UserError`` (the scoring code raised), ``InputError`` (the file could not be
read or was gone), ``TimeoutError`` (``retry_settings.timeout`` passed)."""

from __future__ import annotations

import threading
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.engines.policy import FailureKind
from batchpoint.exceptions import PlatformError
from batchpoint.exceptions import StorageError
from batchpoint.jobs.folder import DoneLog
from batchpoint.jobs.lifecycle import record_progress
from batchpoint.store.sql import SqlMetadataStore

#: the job error's code for the first failure of each kind
ERROR_CODES = {FailureKind.USER: "UserError", FailureKind.INPUT: "InputError", FailureKind.TIMEOUT: "TimeoutError",
               FailureKind.PLATFORM: "PlatformError"}


class Progress:
    def __init__(self, store: SqlMetadataStore, name: str, policy: RetryPolicy, stop: threading.Event, done: DoneLog) -> None:
        self.store, self.name, self.policy, self.stop, self.done = store, name, policy, stop, done
        self.files_failed = done.totals["files_failed"]
        self.first_batch_seen = bool(done.indexes)
        self.split: dict[int, list[Any]] = {}  # index -> [pieces left, pieces failed, summed counts]
        self.threshold_message: str | None = None
        self.first_error: dict[str, Any] | None = None
        self.failed_names: list[str] = []
        if done.indexes:  # resumed: the files that failed before are still named in the summary
            self.failed_names = [f.file.rsplit("/", 1)[-1] for f in store.list_failures(name, limit=5, charged_only=True)
                                 if f.file]
        store.update_job(name, **done.totals)

    def on_outcome(self, outcome: MiniBatchOutcome) -> None:
        b = outcome.batch
        files_ok = 0 if outcome.error else len(b.files)
        charged = outcome.error is not None and FailureKind.of(outcome.error).charged
        deltas = {"files_completed": files_ok, "files_failed": len(b.files) if charged else 0, "rows": outcome.rows}
        finished, totals = self._batch_finished(b, failed=bool(outcome.error), deltas=deltas)
        if finished is not None:
            key = "mini_batches_failed" if finished else "mini_batches_completed"
            deltas[key] = totals[key] = 1
        if outcome.error is not None:
            self._record_failure(b, outcome.error)
        if finished is not None:
            # the resume record first: a mini-batch the job's progress shows as finished is never scored again
            self._record_done(b, totals)
        record_progress(self.store, self.name, **deltas)
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

    def _record_done(self, b: MiniBatch, totals: dict[str, int]) -> None:
        try:
            self.done.add(b.index, **totals)
        except (OSError, StorageError) as exc:  # a full or read-only job folder: the platform's own write
            where = self.done.lines.where()
            raise PlatformError(f"could not record finished mini-batch {b.index} in the job's resume log {where}: "
                                f"{exc}; free space in (or fix) the job folder and invoke again",
                                details={"location": where}) from exc

    def _record_failure(self, b: MiniBatch, error: dict[str, Any]) -> None:
        kind = FailureKind.of(error)
        names = [f.path for f in b.files]
        where = f" ({error['where']})" if error.get("where") else ""
        text = f"{error['type']}: {error['message']}{where}"
        detail = text + ("\n" + error["traceback"] if error.get("traceback") else "")
        for path in names:
            self.store.add_failure(self.name, b.index, path, detail, kind=kind.value, attempt=b.attempt)
        if not kind.charged:
            return
        self.files_failed += len(names)
        if len(self.failed_names) < 5:
            self.failed_names.extend(n.rsplit("/", 1)[-1] for n in names)
        if self.first_error is None:
            self.first_error = {"code": ERROR_CODES[kind], "kind": kind.value, "file": names[0],
                                **{k: error.get(k) for k in ("type", "message", "where")}}
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


