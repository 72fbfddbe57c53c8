"""Jobs: show, list, cancel, logs, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from batchpoint.exceptions import NotFoundError
from batchpoint.jobs.output import output_location
from batchpoint.auth import permissions as P
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import Page, page
from batchpoint.server.security import require_job_data, require_job_read, requires, visible_job_filter
from batchpoint.server.routers.workspace import stream_file
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_scope(request: Request) -> str:
    job = request.app.state.ctx.store.get_job(request.path_params["name"])
    return f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"


@router.get("")
def list_jobs(endpoint: str | None = None, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
              only: str | None = Depends(visible_job_filter)) -> list[dict[str, Any]]:
    rows = ctx.store.list_jobs(endpoint=endpoint, created_by=only, limit=p.limit, offset=p.skip)
    return [ctx.workspace.job_entity(r, with_failures=False).to_dict() for r in rows]


@router.get("/{name}", dependencies=[Depends(require_job_read)])
def get_job(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.job_entity(ctx.store.get_job(name)).to_dict()


@router.post("/{name}/cancel", dependencies=[requires(P.JOBS_CANCEL, job_scope)])
def cancel_job(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    ctx.store.get_job(name)
    ctx.dispatcher.cancel(name)
    return ctx.workspace.job_entity(ctx.store.get_job(name)).to_dict()


@router.get("/{name}/logs", dependencies=[Depends(require_job_read)])
def job_logs(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    ctx.store.get_job(name)
    folder = ctx.settings.jobs_dir / name / "logs"
    return {"logs": [{"name": p.name, "size": p.stat().st_size} for p in sorted(folder.glob("*.log"))]}


@router.get("/{name}/logs/{log_name}", dependencies=[Depends(require_job_data)])
def job_log(name: str, log_name: str, offset: int = 0, ctx: AppContext = Depends(get_context)) -> PlainTextResponse:
    ctx.store.get_job(name)
    path = ctx.settings.jobs_dir / name / "logs" / Path(log_name).name
    if not path.is_file():
        raise NotFoundError(f"job '{name}' has no log '{log_name}'")
    with open(path, "rb") as handle:
        handle.seek(max(0, offset))
        data = handle.read(4 << 20)
    return PlainTextResponse(data.decode("utf-8", "replace"), headers={"X-Next-Offset": str(max(0, offset) + len(data))})


@router.get("/{name}/outputs/{output_name}", dependencies=[Depends(require_job_data)])
def list_output(name: str, output_name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    job = ctx.store.get_job(name)
    output = _output(job, output_name)
    datastore, folder = output_location(output)
    backend = open_backend(ctx.workspace.datastore_spec(datastore))
    files = []
    if backend.is_dir(folder):
        files = [info.path[len(folder):].lstrip("/") for info in backend.iter_files(folder)]
    return {"name": output_name, "path": output["path"], "files": files}


@router.get("/{name}/outputs/{output_name}/files/{path:path}", dependencies=[Depends(require_job_data)])
def download_output(name: str, output_name: str, path: str, ctx: AppContext = Depends(get_context)) -> StreamingResponse:
    job = ctx.store.get_job(name)
    datastore, folder = output_location(_output(job, output_name))
    rel = normalize_relpath(path)
    return stream_file(ctx.workspace.datastore_spec(datastore), f"{folder}/{rel}" if folder else rel)


def _output(job: Any, output_name: str) -> dict[str, Any]:
    outputs = job.outputs or {}
    if output_name not in outputs:
        raise NotFoundError(f"job '{job.name}' has no output '{output_name}'; outputs: {', '.join(outputs) or 'none'}")
    return outputs[output_name]
