"""A running job's progress: counts each mini-batch outcome, records failures with their kind and
attempt, and stops the job when ``error_threshold`` is passed.

Only failures of kind ``user``, ``input`` and ``timeout`` count toward ``error_threshold`` (and
``files_failed``); a ``platform`` failure (never reported as final by the shared policy, which fails
the job instead) is recorded but not charged. The job's ``error`` names the first charged failure
with a code by kind: ``UserError`` (the scoring code raised), ``InputError`` (the file could not be
read or was gone), ``TimeoutError`` (``retry_settings.timeout`` passed).

What each outcome leads to, in this order: its failures (one row per failed file, only for
failures, written at once); then, grouped (a group commit): the parts of the group synced to disk
(the workers write them without an fsync; on the local pool each worker appends its mini-batches
to one segment file per job, synced once per group however many of its pieces the group holds),
the manifest synced, the group's resume records appended to ``done.jsonl`` and synced, and their
counters and progress events written to the metadata store in one transaction (still one progress event per outcome, each with the counters
right after it). So a mini-batch is recorded as finished only once its part is durable, and shown
as finished only once its record is. Groups are written by a thread of their own every
:data:`FLUSH_INTERVAL_S` (at once after a failure), so the engine never waits on the disk or the
database; the first success is written at once, on the engine's thread (one part to sync).
:meth:`Progress.close` writes what is left before the job moves on (``Finalizing``, or the
threshold's ``Failed``). A server killed before a group was written scores that group's
mini-batches again when the job resumes: they were never shown as finished."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.engines.policy import FailureKind
from batchpoint.exceptions import PlatformError
from batchpoint.exceptions import StorageError
from batchpoint.jobs.folder import DoneLog, Manifest
from batchpoint.jobs.lifecycle import record_progress_each, record_with_retries
from batchpoint.outputs import OutputWriter, writer_for
from batchpoint.outputs.parts import sync_parts
from batchpoint.store.sql import SqlMetadataStore

#: the job error's code for the first failure of each kind
ERROR_CODES = {FailureKind.USER: "UserError", FailureKind.INPUT: "InputError", FailureKind.TIMEOUT: "TimeoutError",
               FailureKind.PLATFORM: "PlatformError"}
#: how long an outcome's counters may wait to be written with the next ones
FLUSH_INTERVAL_S = 0.25
#: a group of this many outcomes is committed without waiting for the interval
GROUP_MAX = 64
#: how many finished mini-batches may wait for their done entries: at this many, the engine waits
#: for the disk before it hands out more work, so a slow disk bounds how far the scoring (and the
#: listing, and what a crash leaves to score again) runs ahead of what is durable
BACKLOG_MAX = 4 * GROUP_MAX


@dataclass
class _Pending:
    """One outcome not fully written yet: its counters, and the done-log entry of the mini-batch
    it finished (None while pieces of a split one are outstanding, or for nothing finished)."""

    deltas: dict[str, int]
    done: dict[str, Any] | None = None
    part: str | None = None  # the part it wrote (synced before its done entry is written)
    segment: str | None = None  # or the segment it appended the part to (the file synced instead)
    logged: bool = False  # its done entry is on disk; only the counters are left to write


class Progress:
    def __init__(self, store: SqlMetadataStore, name: str, policy: RetryPolicy, stop: threading.Event, done: DoneLog,
                 manifest: Manifest | None = None, parts_dir: str | None = None, owner: str | None = None,
                 writer: OutputWriter | None = None) -> None:
        self.store, self.name, self.policy, self.stop, self.done = store, name, policy, stop, done
        self.writer = writer or writer_for(None)  # the job's output writer: names (and writes) its parts
        self.owner = owner  # the server running the job: its counters are written only while it still is
        self.manifest = manifest  # its lines are synced before the done log's (a record never outlives its batch)
        self.parts_dir = parts_dir  # the workers' parts, synced here before the done entries naming them
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
        self._pending: list[_Pending] = []  # outcomes not written yet, in order
        self._lock = threading.Lock()  # guards _pending and _unlogged
        self._logged = threading.Condition(self._lock)  # done entries were written (the backlog shrank)
        self._unlogged = 0  # outcomes in _pending whose done entries are not on disk yet
        self._flushing = threading.Lock()  # one flush at a time (the flusher, the first outcome, close())
        self._first_at: datetime | None = None  # when the first mini-batch was scored, until written
        self._error: BaseException | None = None  # what the flusher could not write to disk
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_idle, name=f"progress-{name}", daemon=True)
        self._flusher.start()

    def on_outcome(self, outcome: MiniBatchOutcome) -> None:
        if self._error is not None:  # the resume log could not be written: the job stops with why
            raise self._error
        b = outcome.batch
        missing = 0 if outcome.error else outcome.missing  # run() returned fewer results than files
        files_ok = 0 if outcome.error else len(b.files) - missing
        charged = outcome.error is not None and FailureKind.of(outcome.error).charged
        deltas = {"files_completed": files_ok, "files_failed": len(b.files) if charged else missing,
                  "rows": outcome.rows}
        segment = None if outcome.error else outcome.segment
        finished, totals = self._batch_finished(b, failed=bool(outcome.error), deltas=deltas,
                                                part=None if outcome.error else b.key, segment=segment)
        entry = None
        if finished is not None:
            key = "mini_batches_failed" if finished else "mini_batches_completed"
            deltas[key] = totals[key] = 1
            entry = {"index": b.index, **totals}
        if outcome.error is not None:
            self._record_failure(b, outcome.error)
        elif missing:
            self._record_shortfall(b, missing, outcome.rows)
        first = not self.first_batch_seen and outcome.error is None
        with self._lock:
            self._pending.append(_Pending(deltas, entry, None if outcome.error else b.key,
                                          segment[0] if segment is not None else None))
            self._unlogged += 1
            backlog = self._unlogged >= BACKLOG_MAX
        if backlog:
            self._wait_for_disk()
        elif first:
            self.first_batch_seen = True
            self._first_at = utcnow()
            self.flush()  # the first scored mini-batch shows at once (one part to sync: cheap)
        elif outcome.error is not None or missing or len(self._pending) >= GROUP_MAX:
            self._wake.set()  # a failure shows without waiting for the interval; a big group goes now

    def _wait_for_disk(self) -> None:
        """The done log is :data:`BACKLOG_MAX` outcomes behind (the disk is slower than the
        scoring): wait until the flusher has written them (or the job stops, or the disk failed)."""
        self._wake.set()
        with self._logged:
            while (self._unlogged >= BACKLOG_MAX and self._error is None and not self.stop.is_set()
                   and not self._closed.is_set()):
                self._logged.wait(0.5)
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Write what the outcomes not written yet leave to write, in this order (group commit):
        the parts they wrote are synced to disk, then the manifest, then their done-log entries are
        appended and synced, then their counters and progress events go to the metadata store in
        one transaction. A mini-batch is thus recorded as finished only once its part is durable,
        and shown as finished only once its record is. A failure to write the store leaves the
        counters for the next flush (never a done entry written twice)."""
        with self._flushing:
            with self._lock:
                group = list(self._pending)
            if not group:
                return
            fresh = [p for p in group if not p.logged]
            if fresh:
                self._write_done(fresh)
            if self.owner is None:
                record_progress_each(self.store, self.name, [p.deltas for p in group])
            elif not record_progress_each(self.store, self.name, [p.deltas for p in group], owner=self.owner) \
                    and not self.stop.is_set():
                self._check_owner()
            with self._lock:
                del self._pending[:len(group)]
            if self._first_at is not None:
                self.store.update_job(self.name, first_mini_batch_at=self._first_at)
                self._first_at = None

    def _check_owner(self) -> None:
        """The counters were refused: when the job is another server's now (it took the job over
        while this one stalled), this server stops scoring it at once (its heartbeat would too)."""
        try:
            job = self.store.get_job(self.name)
        except Exception:  # noqa: BLE001 - the heartbeat finds out as well
            return
        if job.owner != self.owner:
            self.stop.set()

    def _write_done(self, fresh: list[_Pending]) -> None:
        try:
            if self.parts_dir is not None and self.writer.writes_parts:
                names = [p.segment or self.writer.part_name(p.part) for p in fresh if p.part]
                sync_parts(self.parts_dir, list(dict.fromkeys(names)))  # a segment once, however many pieces
            if self.manifest is not None:
                self.manifest.lines.sync()
            entries = [p.done for p in fresh if p.done is not None]
            if entries:
                self.done.lines.append(*entries, durable=False)
            self.done.lines.sync()
        except (OSError, StorageError) as exc:  # a full or read-only job folder: the platform's own write
            where = self.done.lines.where()
            raise PlatformError(f"could not write the job's resume log {where} (or the parts it names) to disk: "
                                f"{exc}; free space in (or fix) the job folder and invoke again",
                                details={"location": where}) from exc
        with self._logged:
            for p in fresh:
                p.logged = True
            self._unlogged -= len(fresh)
            self._logged.notify_all()

    def _flush_idle(self) -> None:
        """Every :data:`FLUSH_INTERVAL_S` (at once after a failure), off the engine's thread: the
        engine never waits on the disk or the database for an outcome."""
        while not self._closed.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            if not self._pending:
                continue
            try:
                self.flush()
            except PlatformError as exc:  # the disk: the job fails with it (the next outcome raises it)
                self._error = exc
                return
            except Exception:  # noqa: BLE001 - the database busy: the next flush writes them
                continue

    def close(self, retry_s: float = 60.0) -> None:
        """Write what is left and stop the flusher (the engine has returned). A metadata database
        that refuses the counters (full, read-only) is tried again for ``retry_s`` seconds, then
        :class:`MetadataUnwritable` (the job resumes from its done log once the database takes writes)."""
        self._closed.set()
        self._wake.set()
        self._flusher.join(timeout=10)
        if self._error is not None:
            raise self._error
        record_with_retries(f"the progress of job {self.name}", self.flush, retry_s)

    def _batch_finished(self, b: MiniBatch, failed: bool, deltas: dict[str, int], part: str | None,
                        segment: tuple[str, int, int] | None = None) -> tuple[bool | None, dict[str, Any]]:
        """(None while pieces of a split mini-batch are outstanding, else whether it failed; the counts of
        the whole mini-batch, all its pieces summed, and ``parts``: the keys of its pieces that
        succeeded — the only parts of it the output assembles — for the resume record, with
        ``segments``: ``{key: [segment file, offset, length]}`` for those a worker appended to its
        segment, ``outputs/parts.py finished_parts``)."""
        if b.sub == 0:
            totals = {**deltas, "parts": [part] if part else []}
            if part and segment is not None:
                totals["segments"] = {part: list(segment)}
            return failed, totals
        state = self.split.setdefault(b.index, [b.pieces, 0, {}, [], {}])
        state[0] -= 1
        state[1] += int(failed)
        for key, value in deltas.items():
            state[2][key] = state[2].get(key, 0) + value
        if part:
            state[3].append(part)
            if segment is not None:
                state[4][part] = list(segment)
        if state[0] > 0:
            return None, {}
        del self.split[b.index]
        totals = {**state[2], "parts": sorted(state[3])}
        if state[4]:
            totals["segments"] = {key: state[4][key] for key in sorted(state[4])}
        return state[1] > 0, totals

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

    def _record_shortfall(self, b: MiniBatch, missing: int, results: int) -> None:
        """A script's ``run()`` returned ``results`` for the ``len(b.files)`` files of ``b``: the
        ``missing`` ones count as failed files (kind user, charged to ``error_threshold``), as
        Azure's batch runner counts them. Which files they are is not known: the failure names the
        mini-batch (no file), and its rows are kept."""
        shown = ", ".join(f.name for f in b.files[:3]) + (f" and {len(b.files) - 3} more" if len(b.files) > 3 else "")
        text = (f"ResultShortfall: run() returned {results} result(s) for the {len(b.files)} files of mini-batch "
                f"{b.key} ({shown}): {missing} file(s) without a result are counted as failed (error_threshold). "
                "run() must return one element (row) per input file it scored; Azure's batch runner counts "
                "each element as one input scored")
        self.store.add_failure(self.name, b.index, None, text, kind=FailureKind.USER.value, attempt=b.attempt)
        self.files_failed += missing
        if len(self.failed_names) < 5:
            self.failed_names.append(f"{missing} of mini-batch {b.key}")
        if self.first_error is None:
            self.first_error = {"code": ERROR_CODES[FailureKind.USER], "kind": FailureKind.USER.value, "file": None,
                                "mini_batch": b.key, "type": "ResultShortfall", "message": text, "where": None}
        if self.policy.threshold_exceeded(self.files_failed) and self.threshold_message is None:
            self.threshold_message = (
                f"{self.files_failed} file(s) failed, more than error_threshold {self.policy.error_threshold} allows. "
                f"First failure: {text}")
            self.first_error["message_summary"] = self.threshold_message
            self.stop.set()

    def summary(self) -> str:
        if not self.files_failed:
            return "all mini-batches scored"
        shown = ", ".join(self.failed_names[:5])
        return (f"completed with {self.files_failed} failed file(s) (error_threshold "
                f"{self.policy.error_threshold} ignores them): {shown}")


