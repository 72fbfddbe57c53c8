"""Jobs: show, list, cancel, rerun, events (a list, and a server-sent event stream), logs, outputs.
Each route parses its request, calls a use case (``batchpoint.usecases``) and maps the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.jobs.idempotency import request_key
from batchpoint.jobs.views import job_entity
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import Page, page
from batchpoint.server.routers.endpoints import answered
from batchpoint.server.security import (
    checked_job, require_job_data, require_job_read, requires, sees_server_paths, visible_job_filter)
from batchpoint.usecases import cancel, events, logs, outputs, reads, rerun
from batchpoint.usecases.events import EVENTS_MAX_PAGE

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_scope(request: Request) -> str:
    job = reads.job_or_parent(request.app.state.ctx, request.path_params["name"])
    return f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"


@router.get("")
def list_jobs(endpoint: str | None = None, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
              paths: bool = Depends(sees_server_paths),
              only: str | None = Depends(visible_job_filter),
              parent_job_name: str | None = Query(None, description="the child jobs of this job")) -> list[dict[str, Any]]:
    if parent_job_name is not None:  # the batchscoring step of that job (jobs/children.py)
        return [j.to_dict() for j in reads.child_jobs(ctx, parent_job_name, only, p.skip, paths)]
    rows = reads.list_jobs(ctx, endpoint=endpoint, created_by=only, limit=p.limit, offset=p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]


@router.get("/{name}", dependencies=[Depends(require_job_read)])
def get_job(name: str, request: Request, ctx: AppContext = Depends(get_context),
            paths: bool = Depends(sees_server_paths)) -> dict[str, Any]:
    return reads.show_job(ctx, name, server_paths=paths, row=checked_job(request)).to_dict()


@router.post("/{name}/cancel", dependencies=[requires(P.JOBS_CANCEL, job_scope)])
def cancel_job(name: str, ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> dict[str, Any]:
    return job_entity(ctx.workspace, cancel.cancel(ctx, name), server_paths=paths).to_dict()


@router.post("/{name}/rerun", status_code=202, dependencies=[requires(P.ENDPOINTS_INVOKE, job_scope)])
async def rerun_job_route(name: str, request: Request, response: Response,
                          ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """A new job over the files of finished job ``name``: ``{"failed_only": true}`` scores only those
    that did not succeed and merges its output with the first job's (docs/faults.md). Honours
    ``repeatability-request-id`` as invoke does."""
    body, failed_only = rerun.parse_rerun_body(name, await request.body())
    key = request_key(request.headers)
    started = await run_in_threadpool(lambda: rerun.rerun(
        ctx, name, failed_only=failed_only, principal=getattr(request.state, "principal_id", None), key=key,
        body=body))
    row = answered(request, response, started)
    return job_entity(ctx.workspace, row, with_failures=False, server_paths=sees_server_paths(request)).to_dict()


@router.get("/{name}/events", dependencies=[Depends(require_job_read)])
def job_events(name: str, after: str | None = Query(None, description="events with seq above this (default 0)"),
               limit: str | None = Query(None, description=f"events per page (1-{EVENTS_MAX_PAGE}, default 100)"),
               ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> list[dict[str, Any]]:
    """The job's history, oldest first: status transitions and progress changes (a child job's:
    its parent's, which it is a view of)."""
    return events.list_events(ctx, name, after, limit, server_paths=paths)


@router.get("/{name}/events/stream", dependencies=[Depends(require_job_read)])
def stream_job_events(name: str, request: Request, after: str | None = Query(None),
                      ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> StreamingResponse:
    """The job's events as server-sent events (``id: <seq>``, ``data: <event JSON>``) as they happen,
    from ``Last-Event-ID`` (a reconnect) or ``?after=``; ends after the job's terminal event."""
    start = events.stream_start(request.headers.get("last-event-id"), after)
    return event_stream_response(events.stream_events(ctx, name, start, server_paths=paths))


def event_stream_response(stream: Any) -> StreamingResponse:
    """Server-sent events, never cached nor buffered by a proxy (the API's and the web page's)."""
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{name}/logs", dependencies=[Depends(require_job_read)])
def job_logs(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """The job's log files (a child job's: its parent's, as for outputs and events)."""
    return {"logs": logs.list_logs(ctx, name)}


@router.get("/{name}/logs/{log_name}", dependencies=[Depends(require_job_data)])
def job_log(name: str, log_name: str, offset: int = 0, ctx: AppContext = Depends(get_context)) -> PlainTextResponse:
    data = logs.read_log(ctx, name, log_name, offset)
    return PlainTextResponse(data.decode("utf-8", "replace"), headers={"X-Next-Offset": str(max(0, offset) + len(data))})


@router.get("/{name}/outputs/{output_name}", dependencies=[Depends(require_job_data)])
def list_output(name: str, output_name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """An output's files (a child job's outputs are its parent's: the same files)."""
    return outputs.list_output(ctx, name, output_name)


@router.get("/{name}/outputs/{output_name}/files/{path:path}", dependencies=[Depends(require_job_data)])
def download_output(name: str, output_name: str, path: str, ctx: AppContext = Depends(get_context)) -> StreamingResponse:
    return StreamingResponse(outputs.read_output_file(ctx, name, output_name, path), media_type="application/octet-stream")
