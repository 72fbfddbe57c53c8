"""A job as the API shows it: the row, its failures, its worker logs (from the job folder), and
(for one job, not in lists) its phases with their times and a summary of its errors.

Where a local data store lives on the server's disk is the Owner's business: other callers see
``local data store '<name>'`` instead of the folder in an input's ``location``."""

from __future__ import annotations

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
    """``server_paths``: show where local data stores are on the server's disk (Owners)."""
    failures = ws.store.list_failures(row.name, limit=50) if with_failures else []
    logs = [name for name, _ in JobFolder.local(ws.settings.jobs_dir, row.name).log_files()]
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
        errors=errors_summary(ws.store, row) if with_failures else None,
    )


def _without_server_paths(spec: dict[str, Any]) -> dict[str, Any]:
    if not str(spec.get("location", "")).startswith("local("):
        return spec
    shown = f"local data store '{spec.get('datastore') or '?'}'"
    out = {**spec, "location": shown}
    if isinstance(spec.get("pinned"), dict):
        out["pinned"] = {**spec["pinned"], "location": shown}
    return out
