"""A job's errors file: every failed file, one JSON line each, next to the job's predictions.

``<output folder>/errors.jsonl`` on the output data store (``batchpoint-errors.jsonl`` when the
job's ``output_file_name`` is itself ``errors.jsonl``), written when the job finalizes and also
when it fails or is canceled (then it holds the failures recorded so far). A job without failures
writes none. ``job download`` brings it with the predictions. One line::

    {"file": "heart-unlabeled-0.csv", "path": "azureml://.../heart-unlabeled-0.csv", "mini_batch": 0,
     "attempt": 1, "kind": "user", "exception_type": "ValueError", "message": "cannot score",
     "where": "score.py, line 20, in run", "frames": "  File \\"score.py\\", line 20, in run\\n ..."}

``kind``: ``user`` (the scoring code raised), ``input`` (the file could not be read or was gone),
``timeout`` (``retry_settings.timeout`` passed), ``platform`` (the platform failed; not charged to
``error_threshold``). ``frames`` are the user's own frames only (``worker/errors.py`` trims the
framework's and names files by their base name), so no server path is in the file.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from batchpoint.exceptions import PlatformError, StorageError
from batchpoint.jobs.output_target import job_output
from batchpoint.storage.registry import open_backend
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import JobFailureRow, JobRow
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

ERRORS_FILE = "errors.jsonl"
ERRORS_FILE_ALT = "batchpoint-errors.jsonl"
MAX_LINES = 1_000_000  # failures read for one file (one per failed file: a job this broken stops earlier)
SUMMARY_ROWS = 10_000  # failures counted by job show (``more``: there are more; the errors file has all)
_HEAD = re.compile(r"(?s)^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*?)(?: \((?P<where>[^()\n]*, line \d+, in [^()\n]*)\))?$")


def errors_file_name(job: JobRow) -> str:
    output = (job.outputs or {}).get("score") or {}
    return ERRORS_FILE_ALT if output.get("file_name") == ERRORS_FILE else ERRORS_FILE


def errors_file_uri(job: JobRow) -> str | None:
    """Where the job's errors file is (or would be), as an ``azureml://`` data store path."""
    output = (job.outputs or {}).get("score")
    if not output:
        return None
    return f"{output['path'].rstrip('/')}/{errors_file_name(job)}"


def parse_failure_text(text: str) -> dict[str, Any]:
    """A recorded failure's text (``Type: message (where)`` then the user's frames) → its parts."""
    head, sep, rest = text.partition('\n  File "')
    frames = f'  File "{rest}' if sep else ""
    match = _HEAD.match(head.strip())
    if match is None:
        return {"exception_type": None, "message": head.strip(), "where": None, "frames": frames}
    return {"exception_type": match["type"], "message": match["message"], "where": match["where"], "frames": frames}


def failure_entry(row: JobFailureRow) -> dict[str, Any]:
    path = row.file or ""
    return {"file": path.rsplit("/", 1)[-1] or None, "path": row.file, "mini_batch": row.mini_batch,
            "attempt": row.attempt, "kind": row.kind or "user", **parse_failure_text(row.error or "")}


def errors_summary(store: SqlMetadataStore, job: JobRow, limit: int = 5,
                   first_rows: list[JobFailureRow] | None = None) -> dict[str, Any] | None:
    """What ``job show`` says of a job's failures: counts by kind (of the first ``SUMMARY_ROWS``,
    counted by the database), the first few, the errors file. ``first_rows``: the job's first
    failures (at least ``limit`` of them, or all it has) when the caller has read them already:
    none there, none at all (the common case costs no query here)."""
    if first_rows is not None and not first_rows:
        return None
    by_kind = store.failure_kinds(job.name, SUMMARY_ROWS)
    if not by_kind:
        return None
    if first_rows is None or len(first_rows) < min(limit, sum(by_kind.values())):
        first_rows = store.list_failures(job.name, limit=limit)
    first = [failure_entry(r) for r in first_rows[:limit]]  # with the user's frames: job stream's root cause
    failed = sum(by_kind.values())
    return {"failed_files": failed, "more": failed == SUMMARY_ROWS, "by_kind": by_kind,
            "first": first, "errors_file": errors_file_uri(job)}


def write_errors_file(ws: WorkspaceService, job: JobRow) -> str | None:
    """Write the job's errors file next to its output; returns its data store path (None: no
    failures, or no output location). A write that fails raises :class:`PlatformError`."""
    rows = ws.store.list_failures(job.name, limit=MAX_LINES)
    output = job_output(job)  # the location the job row stores parsed
    if not rows or output is None:
        return None
    datastore = output.datastore
    backend = open_backend(ws.datastore_spec(datastore))
    target = output.at(errors_file_name(job))
    try:
        with backend.open_write(target) as out:
            for row in rows:
                out.write((json.dumps(failure_entry(row), ensure_ascii=False) + "\n").encode("utf-8"))
    except (OSError, StorageError) as exc:
        where = errors_file_uri(job)
        raise PlatformError(f"could not write the job's errors file {where} (data store '{datastore}'): {exc}; "
                            "its failures are still listed by 'batchpoint job show'",
                            details={"location": where}) from exc
    return errors_file_uri(job)


def partial_errors_file(ws: WorkspaceService, name: str) -> None:
    """After a job failed or was canceled: its errors file with the failures recorded so far (best
    effort: the job has already ended with its own root cause)."""
    job = ws.store.get_job(name)
    if job.status not in ("Failed", "Canceled"):
        return  # completed (written at finalize), or still active (the server is stopping: it resumes)
    try:
        write_errors_file(ws, job)
    except Exception:  # noqa: BLE001 - never hide the job's own failure behind this one
        log.warning("job %s: could not write its errors file", name, exc_info=True)
