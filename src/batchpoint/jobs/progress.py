"""A running job's progress: counts each mini-batch outcome, records failures with their kind and
attempt, and stops the job when ``error_threshold`` is passed.

Only failures of kind ``user``, ``input`` and ``timeout`` count toward ``error_threshold`` (and
``files_failed``); a ``platform`` failure (never reported as final by the shared policy, which fails
the job instead) is recorded but not charged. The job's ``error`` names the first charged failure
with a code by kind: ``UserError`` (the scoring code raised), ``InputError`` (the file could not be
read or was gone), ``TimeoutError`` (``retry_settings.timeout`` passed).

What each outcome writes, in this order: its failures (one row per failed file, only for
failures), its resume record in ``done.jsonl`` (durable before anything shows the mini-batch as
finished), then its counters and progress event in the metadata store. The last step is grouped:
outcomes wait up to :data:`FLUSH_INTERVAL_S` and are written together in one transaction (still
one progress event per outcome, each with the counters right after it), so a job of many small
mini-batches costs one database write per quarter second instead of one per mini-batch. The first
success and every failure are written at once; :meth:`Progress.close` writes what is left before
the job moves on (``Finalizing``, or the threshold's ``Failed``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.engines.policy import FailureKind
from batchpoint.exceptions import PlatformError
from batchpoint.exceptions import StorageError
from batchpoint.jobs.folder import DoneLog, Manifest
from batchpoint.jobs.lifecycle import record_progress_each
from batchpoint.store.sql import SqlMetadataStore

#: the job error's code for the first failure of each kind
ERROR_CODES = {FailureKind.USER: "UserError", FailureKind.INPUT: "InputError", FailureKind.TIMEOUT: "TimeoutError",
               FailureKind.PLATFORM: "PlatformError"}
#: how long an outcome's counters may wait to be written with the next ones
FLUSH_INTERVAL_S = 0.25


class Progress:
    def __init__(self, store: SqlMetadataStore, name: str, policy: RetryPolicy, stop: threading.Event, done: DoneLog,
                 manifest: Manifest | None = None) -> None:
        self.store, self.name, self.policy, self.stop, self.done = store, name, policy, stop, done
        self.manifest = manifest  # its lines are synced before the done log's (a record never outlives its batch)
        self.files_failed = done.totals["files_failed"]
        self.first_batch_seen = bool(done.indexes)
        self.split: dict[int, list[Any]] = {}  # index -> [pieces left, pieces failed, summed counts]
        self.threshold_message: str | None = None
        self.first_error: dict[str, Any] | None = None
        self.failed_names: list[str] = []
        # resumed: a mini-batch not finished at the crash is scored again, so the failures its
        # pieces recorded then go (they are recorded again, once); the finished ones' stay
        store.drop_failures_of_unfinished(name, set(done.indexes))
        if done.indexes:  # resumed: the files that failed before are still named in the summary
            self.failed_names = [f.file.rsplit("/", 1)[-1] for f in store.list_failures(name, limit=5, charged_only=True)
                                 if f.file]
        store.update_job(name, **done.totals)
        self._pending: list[dict[str, int]] = []  # counters of outcomes not written yet
        self._lock = threading.Lock()  # one writer of _pending to the store at a time
        self._last_flush = time.monotonic()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_idle, name=f"progress-{name}", daemon=True)
        self._flusher.start()

    def on_outcome(self, outcome: MiniBatchOutcome) -> None:
        b = outcome.batch
        files_ok = 0 if outcome.error else len(b.files)
        charged = outcome.error is not None and FailureKind.of(outcome.error).charged
        deltas = {"files_completed": files_ok, "files_failed": len(b.files) if charged else 0, "rows": outcome.rows}
        finished, totals = self._batch_finished(b, failed=bool(outcome.error), deltas=deltas,
                                                part=None if outcome.error else b.key)
        if finished is not None:
            key = "mini_batches_failed" if finished else "mini_batches_completed"
            deltas[key] = totals[key] = 1
        if outcome.error is not None:
            self._record_failure(b, outcome.error)
        if finished is not None:
            # the resume record first: a mini-batch the job's progress shows as finished is never scored again
            self._record_done(b, totals)
        first = not self.first_batch_seen and outcome.error is None
        with self._lock:
            self._pending.append(deltas)
        if first or outcome.error is not None or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self.flush()
        if first:
            self.first_batch_seen = True
            self.store.update_job(self.name, first_mini_batch_at=utcnow())

    def flush(self) -> None:
        """Write the counters and progress events of the outcomes not written yet."""
        with self._lock:
            changes, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            if not changes:
                return
            self._sync_logs()  # group commit: one fsync per log for all of these outcomes
            record_progress_each(self.store, self.name, changes)

    def _sync_logs(self) -> None:
        try:
            if self.manifest is not None:
                self.manifest.lines.sync()
            self.done.lines.sync()
        except (OSError, StorageError) as exc:
            where = self.done.lines.where()
            raise PlatformError(f"could not write the job's resume log {where} to disk: {exc}; free space in (or "
                                "fix) the job folder and invoke again", details={"location": where}) from exc

    def _flush_idle(self) -> None:
        """Outcomes that came just before a pause (a slow mini-batch) are written after at most
        twice :data:`FLUSH_INTERVAL_S`, not only with the next outcome."""
        while not self._closed.wait(FLUSH_INTERVAL_S):
            if self._pending and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the database busy: the next flush writes them
                    continue

    def close(self) -> None:
        """Write what is left and stop the flusher (the engine has returned)."""
        self._closed.set()
        self._flusher.join(timeout=10)
        self.flush()

    def _batch_finished(self, b: MiniBatch, failed: bool, deltas: dict[str, int],
                        part: str | None) -> tuple[bool | None, dict[str, Any]]:
        """(None while pieces of a split mini-batch are outstanding, else whether it failed; the counts of
        the whole mini-batch, all its pieces summed, and ``parts``: the keys of its pieces that
        succeeded — the only parts of it the output assembles — for the resume record)."""
        if b.sub == 0:
            return failed, {**deltas, "parts": [part] if part else []}
        state = self.split.setdefault(b.index, [b.pieces, 0, {}, []])
        state[0] -= 1
        state[1] += int(failed)
        for key, value in deltas.items():
            state[2][key] = state[2].get(key, 0) + value
        if part:
            state[3].append(part)
        if state[0] > 0:
            return None, {}
        del self.split[b.index]
        return state[1] > 0, {**state[2], "parts": sorted(state[3])}

    def _record_done(self, b: MiniBatch, totals: dict[str, Any]) -> None:
        try:
            self.done.add(b.index, durable=False, **totals)  # on disk at the next flush(), before it shows
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


