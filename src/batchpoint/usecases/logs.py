"""A job's worker logs (``logs/worker-<n>.log`` in its job folder, ``jobs/folder.py``). A child
job's logs are its parent's."""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import NotFoundError
from batchpoint.jobs import children
from batchpoint.jobs.folder import JobFolder
from batchpoint.store.tables import JobRow
from batchpoint.usecases.services import Services


def folder_of(sv: Services, job: JobRow) -> JobFolder:
    return JobFolder.local(sv.settings.jobs_dir, job.name)


def list_logs(sv: Services, name: str) -> list[dict[str, Any]]:
    """``{"name", "size"}`` of each log file of job ``name``."""
    folder = folder_of(sv, children.job_row(sv.store, name))
    return [{"name": log, "size": size} for log, size in folder.log_files()]


def read_log(sv: Services, name: str, log_name: str, offset: int = 0) -> bytes:
    """The log ``log_name`` of job ``name`` from byte ``offset`` (up to 4 MiB); a 404 for no such log."""
    data = folder_of(sv, children.job_row(sv.store, name)).read_log(log_name, offset)
    if data is None:
        raise NotFoundError(f"job '{name}' has no log '{log_name}'; 'batchpoint job show -n {name}' lists its log files")
    return data


def worker_logs(sv: Services, job: JobRow, limit: int = 16 << 20) -> dict[str, str]:
    """The text of each ``worker-*`` log of ``job`` (up to ``limit`` bytes each)."""
    folder = folder_of(sv, job)
    logs = {}
    for log_name, _ in folder.log_files():
        raw = folder.read_log(log_name, 0, limit)
        if raw is not None and log_name.startswith("worker-"):
            logs[log_name] = raw.decode("utf-8", "replace")
    return logs


def log_bytes(sv: Services, job: JobRow, log_name: str, offset: int = 0) -> bytes | None:
    """Log ``log_name`` of ``job`` from ``offset``; None when it has no such log."""
    return folder_of(sv, job).read_log(log_name, offset)
