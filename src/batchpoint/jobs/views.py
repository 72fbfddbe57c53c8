"""A job as the API shows it: the row, its failures, its worker logs (from the job folder), and
(for one job, not in lists) its phases with their times and a summary of its errors.

Where a local data store lives on the server's disk is the Owner's business: other callers see
``local data store '<name>'`` instead of the folder in an input's ``location``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import as_utc
from batchpoint._internal.ids import resource_id
from batchpoint.entities import Job, JobFailure, JobOutput, JobProgress
from batchpoint.jobs.errors_file import errors_summary
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.timeline import timeline
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService


def job_entity(ws: WorkspaceService, row: JobRow, with_failures: bool = True, server_paths: bool = False) -> Job:
    """``server_paths``: show where local data stores are on the server's disk (Owners). Others see
    no absolute server path anywhere in the job (``hide_server_paths``)."""
    failures = ws.store.list_failures(row.name, limit=50) if with_failures else []
    logs = [name for name, _ in JobFolder.local(ws.settings.jobs_dir, row.name).log_files()]
    job = _entity(ws, row, failures, logs, with_failures, server_paths)
    if server_paths:
        return job
    return Job.model_validate(_recent_hider(ws).apply(job.model_dump(mode="json", by_alias=True)))


_HIDERS: dict[int, tuple[float, Any]] = {}


def _recent_hider(ws: WorkspaceService) -> _Hider:
    """One hider per workspace for a second: a list of 1,000 jobs looks the data stores up once."""
    now = time.monotonic()
    found = _HIDERS.get(id(ws))
    if found is None or now - found[0] > 1.0:
        found = _HIDERS[id(ws)] = (now, _Hider(ws))
    return found[1]


def hide_server_paths(ws: WorkspaceService, value: Any) -> Any:
    """``value`` (text, or lists and mappings of it) with the server's folders replaced: a local data
    store's folder by ``<data store 'name'>``, the server's home by ``<server home>``, and
    ``local(path=...)`` by ``local data store``. For everyone but Owners (docs/security.md)."""
    return _Hider(ws).apply(value)


def server_path_hider(ws: WorkspaceService) -> Any:
    """:func:`hide_server_paths` as one callable that looks the data stores up once (for a stream)."""
    return _Hider(ws).apply


class _Hider:
    def __init__(self, ws: WorkspaceService) -> None:
        pairs: list[tuple[str, str]] = []
        for ds in ws.store.list_datastores(limit=100_000):
            if ds.kind == "local" and ds.config.get("path"):
                pairs += [(p, f"<data store '{ds.name}'>") for p in _spellings(ds.config["path"])]
        pairs += [(p, "<server home>") for p in _spellings(str(ws.settings.home))]
        self.pairs = sorted({p for p in pairs if len(p[0]) > 1}, key=lambda p: -len(p[0]))  # longest first

    def apply(self, value: Any) -> Any:
        if isinstance(value, str):
            text = _LOCAL_SPEC.sub("local data store", value)
            for path, shown in self.pairs:
                text = text.replace(path, shown)
            return text
        if isinstance(value, dict):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        return value


_LOCAL_SPEC = re.compile(r"local\(path=[^)]*\)")


def _spellings(path: str) -> list[str]:
    """A folder as it may appear in messages: as configured and resolved (links, /tmp → /private/tmp)."""
    found = {path.rstrip("/") or path}
    try:
        found.add(str(Path(path).resolve()))
    except OSError:
        pass
    return list(found)


def _entity(ws: WorkspaceService, row: JobRow, failures: list[Any], logs: list[str], with_failures: bool,
            server_paths: bool) -> Job:
    return Job(
        name=row.name, display_name=row.name, id=resource_id(ws.settings, "job", row.name), status=row.status,
        experiment_name=(row.plan or {}).get("experiment_name") or row.endpoint_name,
        status_message=row.status_message, endpoint_name=row.endpoint_name, deployment_name=row.deployment_name,
        inputs=row.inputs if server_paths else {k: _without_server_paths(v) for k, v in (row.inputs or {}).items()},
        outputs={k: JobOutput(**v) for k, v in (row.outputs or {}).items()},
        settings=row.settings, error=row.error, created_by=row.created_by, server=row.owner,
        progress=JobProgress(
            mini_batches_total=row.mini_batches_total, mini_batches_completed=row.mini_batches_completed,
            mini_batches_failed=row.mini_batches_failed, files_total=row.files_total,
            files_completed=row.files_completed, files_failed=row.files_failed, rows=row.rows,
            listing_complete=row.listing_complete),
        failures=[JobFailure(mini_batch=f.mini_batch, file=f.file, error=f.error, kind=f.kind or "user",
                             attempt=f.attempt) for f in failures],
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at), start_time=as_utc(row.start_time),
        end_time=as_utc(row.end_time), first_mini_batch_at=as_utc(row.first_mini_batch_at),
        listing_completed_at=as_utc(row.listing_completed_at), log_files=logs,
        phases=timeline(row, ws.store.list_job_events(row.name, 0, 10_000, types=("status", "phase")))
        if with_failures else [],
        errors=errors_summary(ws.store, row, first_rows=failures) if with_failures else None,
    )


def _without_server_paths(spec: dict[str, Any]) -> dict[str, Any]:
    if not str(spec.get("location", "")).startswith("local("):
        return spec
    shown = f"local data store '{spec.get('datastore') or '?'}'"
    out = {**spec, "location": shown}
    if isinstance(spec.get("pinned"), dict):
        out["pinned"] = {**spec["pinned"], "location": shown}
    return out
