"""What each page shows, gathered with the same permission checks as the API (``ui/auth.Access``):
a section the principal may not see says which permission it needs instead of showing data."""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.exceptions import BatchpointError, PermissionDeniedError
from batchpoint.jobs.errors_file import errors_file_name, errors_file_uri
from batchpoint.jobs.output import output_location
from batchpoint.jobs.views import job_entity
from batchpoint.server.ui.auth import Access
from batchpoint.storage.registry import open_backend

MAX_ERRORS_SHOWN = 1000
TERMINAL = ("Completed", "Failed", "Canceled")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def needs(access: Access, permission: str, scope: str = "workspace") -> str:
    return f"{access.principal} may not see this: it needs {permission} on {scope}"


def endpoints(ctx: Any, access: Access) -> dict[str, Any]:
    if not access.may(P.ENDPOINTS_READ):
        return {"denied": needs(access, P.ENDPOINTS_READ), "endpoints": []}
    shown = []
    for row in ctx.store.list_endpoints():
        endpoint = ctx.workspace.endpoint_entity(row)
        scope = f"endpoint:{endpoint.name}"
        deployments = None
        if access.may(P.DEPLOYMENTS_READ, scope):
            deployments = [ctx.workspace.deployment_entity(d) for d in ctx.store.list_deployments(endpoint.name)]
        shown.append({"endpoint": endpoint, "deployments": deployments,
                      "deployments_denied": None if deployments is not None else needs(access, P.DEPLOYMENTS_READ, scope)})
    return {"denied": None, "endpoints": shown}


def jobs(ctx: Any, access: Access, endpoint: str | None = None, limit: int = 200) -> dict[str, Any]:
    only = access.job_filter()
    if only is False:
        return {"denied": needs(access, P.JOBS_READ_OWN), "jobs": []}
    rows = ctx.store.list_jobs(endpoint=endpoint, created_by=only, limit=limit, offset=0)
    return {"denied": None, "jobs": [job_entity(ctx.workspace, r, with_failures=False) for r in rows],
            "own_only": only is not None}


def readable_job(ctx: Any, access: Access, name: str, data: bool = False) -> Any:
    """The job's row if the principal may read it (``data``: its outputs, logs, errors file)."""
    job = ctx.store.get_job(name)
    if data and not access.may_read_job_data(job):
        raise PermissionDeniedError(needs(access, P.JOBS_OUTPUTS_READ, access.job_scope(job)))
    if not data and not access.may_read_job(job):
        raise PermissionDeniedError(needs(access, P.JOBS_READ, access.job_scope(job)))
    return job


def output_files(ctx: Any, job: Any) -> list[dict[str, str]]:
    files = []
    for out_name, output in (job.outputs or {}).items():
        try:
            datastore, folder = output_location(output)
            backend = open_backend(ctx.workspace.datastore_spec(datastore))
            if backend.is_dir(folder):
                for info in backend.iter_files(folder):
                    files.append({"output": out_name, "path": info.path[len(folder):].lstrip("/")})
        except BatchpointError:
            continue  # the store cannot be read now: the page shows no link rather than failing
    return files


def job(ctx: Any, access: Access, name: str) -> dict[str, Any]:
    row = readable_job(ctx, access, name)
    entity = job_entity(ctx.workspace, row, server_paths=access.sees_server_paths())
    data = access.may_read_job_data(row)
    return {"job": entity, "data_allowed": data, "data_denied": None if data else needs(
                access, P.JOBS_OUTPUTS_READ, access.job_scope(row)),
            "files": output_files(ctx, row) if data and row.status in TERMINAL else [],
            "may_cancel": access.may(P.JOBS_CANCEL, access.job_scope(row)) and row.status not in TERMINAL,
            "terminal": row.status in TERMINAL, "errors_file_name": errors_file_name(row),
            "initial": json.dumps({"name": entity.name, "status": entity.status,
                                   "progress": entity.progress.to_dict()})}


def job_json(ctx: Any, access: Access, name: str) -> dict[str, Any]:
    values = job(ctx, access, name)
    entity = values["job"]
    return {"status": entity.status, "status_message": entity.status_message, "progress": entity.progress.to_dict(),
            "phases": entity.phases, "errors": entity.errors, "files": values["files"],
            "log_files": entity.log_files if values["data_allowed"] else []}


def job_errors(ctx: Any, access: Access, name: str) -> dict[str, Any]:
    """The errors file's lines (data: needs the job's data permission), else the failures as recorded."""
    row = readable_job(ctx, access, name)
    entity = job_entity(ctx.workspace, row, server_paths=access.sees_server_paths())
    lines: list[dict[str, Any]] = []
    note = None
    if access.may_read_job_data(row):
        output = (row.outputs or {}).get("score")
        try:
            datastore, folder = output_location(output)
            backend = open_backend(ctx.workspace.datastore_spec(datastore))
            path = f"{folder}/{errors_file_name(row)}" if folder else errors_file_name(row)
            if backend.is_file(path):
                with backend.open_read(path) as handle:
                    for number, raw in enumerate(handle):
                        if number >= MAX_ERRORS_SHOWN:
                            note = f"the first {MAX_ERRORS_SHOWN} lines are shown; download the file for all"
                            break
                        lines.append(json.loads(raw))
            elif row.status in TERMINAL:
                note = "this job wrote no errors file: no file failed" if not entity.failures else None
            else:
                note = "the errors file is written when the job ends"
        except (BatchpointError, ValueError, TypeError) as exc:
            note = f"the errors file could not be read: {exc}"
    else:
        note = needs(access, P.JOBS_OUTPUTS_READ, access.job_scope(row)) + " (the errors file is data)"
    return {"job": entity, "lines": lines, "note": note, "errors_file": errors_file_uri(row),
            "errors_file_name": errors_file_name(row), "data_allowed": access.may_read_job_data(row)}


def assets(ctx: Any, access: Access) -> dict[str, Any]:
    data = models = None
    if access.may(P.ASSETS_READ):
        data = [ctx.workspace.data_entity(r) for r in ctx.store.list_assets("data")]
    if access.may(P.MODELS_READ):
        models = [ctx.workspace.model_entity(r) for r in ctx.store.list_assets("models")]
    return {"data": data, "models": models, "data_denied": None if data is not None else needs(access, P.ASSETS_READ),
            "models_denied": None if models is not None else needs(access, P.MODELS_READ)}
