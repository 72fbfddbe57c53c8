"""Jobs: show, list, cancel, events (a list, and a server-sent event stream), logs, outputs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from batchpoint.exceptions import NotFoundError, ValidationError
from batchpoint.jobs.idempotency import fingerprint, request_key, run_once
from batchpoint.jobs.lifecycle import event_json, is_terminal_event
from batchpoint.jobs.rerun import rerun_job
from batchpoint.jobs.states import TERMINAL
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.output import output_location
from batchpoint.auth import permissions as P
from batchpoint.jobs import children
from batchpoint.jobs.views import hide_server_paths, job_entity, server_path_hider
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import Page, page
from batchpoint.server.security import require_job_data, require_job_read, requires, sees_server_paths, visible_job_filter
from batchpoint.server.routers.workspace import stream_file
from batchpoint.storage.base import normalize_relpath
from batchpoint.store.sql import SqlMetadataStore
from starlette.concurrency import run_in_threadpool
from batchpoint.storage.registry import open_backend

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_scope(request: Request) -> str:
    job = children.job_row(request.app.state.ctx.store, request.path_params["name"])
    return f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"


@router.get("")
def list_jobs(endpoint: str | None = None, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
              paths: bool = Depends(sees_server_paths),
              only: str | None = Depends(visible_job_filter),
              parent_job_name: str | None = Query(None, description="the child jobs of this job")) -> list[dict[str, Any]]:
    if parent_job_name is not None:  # the batchscoring step of that job (jobs/children.py)
        parent = children.job_row(ctx.store, parent_job_name)
        seen = p.skip == 0 and (only is None or parent.created_by == only) and not children.is_child_name(parent_job_name)
        return [children.child_entity(job_entity(ctx.workspace, parent, with_failures=False, server_paths=paths))
                .to_dict()] if seen else []
    rows = ctx.store.list_jobs(endpoint=endpoint, created_by=only, limit=p.limit, offset=p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]


@router.get("/{name}", dependencies=[Depends(require_job_read)])
def get_job(name: str, ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> dict[str, Any]:
    if children.is_child_name(name):
        parent = job_entity(ctx.workspace, children.job_row(ctx.store, name), server_paths=paths)
        return children.child_entity(parent).to_dict()
    return job_entity(ctx.workspace, ctx.store.get_job(name), server_paths=paths).to_dict()


@router.post("/{name}/cancel", dependencies=[requires(P.JOBS_CANCEL, job_scope)])
def cancel_job(name: str, ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> dict[str, Any]:
    children.refuse_step(name, "cancel")
    ctx.store.get_job(name)
    ctx.dispatcher.cancel(name)
    return job_entity(ctx.workspace, ctx.store.get_job(name), server_paths=paths).to_dict()


@router.post("/{name}/rerun", status_code=202, dependencies=[requires(P.ENDPOINTS_INVOKE, job_scope)])
async def rerun_job_route(name: str, request: Request, response: Response,
                          ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """A new job over the files of finished job ``name``: ``{"failed_only": true}`` scores only those
    that did not succeed and merges its output with the first job's (docs/faults.md). Honours
    ``repeatability-request-id`` as invoke does."""
    children.refuse_step(name, "rerun")
    body = await _json_body(request)
    unknown = sorted(set(body) - {"failed_only"})
    if unknown or not isinstance(body.get("failed_only", False), bool):
        raise ValidationError("the rerun body is {\"failed_only\": true|false} (default false)"
                              + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    failed_only = bool(body.get("failed_only", False))
    user = getattr(request.state, "principal_id", None)
    assignments = await run_in_threadpool(ctx.auth.assignments, user) if user else []

    def submit(job_name: str | None) -> Any:
        return rerun_job(ctx.workspace, name, failed_only=failed_only, created_by=user, assignments=assignments,
                         job_name=job_name)

    key = request_key(request.headers)
    if key is None:
        row = await run_in_threadpool(submit, None)
    else:
        row, _ = await run_in_threadpool(run_once, ctx.store, key, user, fingerprint(f"rerun {name}", body), None,
                                         submit, "rerun")
        response.headers["repeatability-result"] = "accepted"
    request.state.audit = {"action": "rerun", "job": row.name, "of": name, "failed_only": failed_only}
    ctx.dispatcher.notify()
    return job_entity(ctx.workspace, row, with_failures=False, server_paths=sees_server_paths(request)).to_dict()


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


EVENTS_MAX_PAGE = 1000
STREAM_POLL_S = 0.2  # how often an open stream looks for new events
STREAM_HEARTBEAT_S = 15.0  # a comment line when nothing else was sent, so proxies keep the stream open
STREAM_MAX_S = 300.0  # then the stream ends without a terminal event; a client reconnects with Last-Event-ID
STREAM_RECHECK_S = 2.0  # how often an idle stream checks whether the job ended with no terminal event


def _whole_number(value: str | None, what: str, default: int, low: int, high: int | None = None) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValidationError(f"{what} must be a whole number {bounds}, not '{value}'")
    return number


def _after(value: str | None, what: str = "after") -> int:
    return _whole_number(value, f"{what} (the seq of the last event you have; 0 for all)", 0, 0)


@router.get("/{name}/events", dependencies=[Depends(require_job_read)])
def job_events(name: str, after: str | None = Query(None, description="events with seq above this (default 0)"),
               limit: str | None = Query(None, description=f"events per page (1-{EVENTS_MAX_PAGE}, default 100)"),
               ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> list[dict[str, Any]]:
    """The job's history, oldest first: status transitions and progress changes (a child job's:
    its parent's, which it is a view of)."""
    start = _after(after)
    size = _whole_number(limit, "limit (events per page)", 100, 1, EVENTS_MAX_PAGE)
    events = [event_json(row) for row in ctx.store.list_job_events(children.parent_name(name), start, size)]
    return events if paths else hide_server_paths(ctx.workspace, events)  # Owners only (issue 18 §5)


@router.get("/{name}/events/stream", dependencies=[Depends(require_job_read)])
def stream_job_events(name: str, request: Request, after: str | None = Query(None),
                      ctx: AppContext = Depends(get_context), paths: bool = Depends(sees_server_paths)) -> StreamingResponse:
    """The job's events as server-sent events (``id: <seq>``, ``data: <event JSON>``) as they happen,
    from ``Last-Event-ID`` (a reconnect) or ``?after=``; ends after the job's terminal event."""
    last_id = request.headers.get("last-event-id")
    start = _after(last_id, "the Last-Event-ID header") if last_id else _after(after)
    hide = None if paths else server_path_hider(ctx.workspace)  # Owners only (issue 18 §5)
    return StreamingResponse(_event_stream(ctx.store, children.parent_name(name), start, hide), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _event_stream(store: SqlMetadataStore, name: str, after: int, hide: Any = None) -> AsyncIterator[str]:
    """Poll the store off the event loop every STREAM_POLL_S; a job that ended without a terminal
    event (one from before job events existed) ends the stream after its last event."""
    opened = sent = checked = time.monotonic()
    ended = False
    yield "retry: 1000\n\n"
    while True:
        rows = await run_in_threadpool(store.list_job_events, name, after, EVENTS_MAX_PAGE)
        for row in rows:
            after = row.seq
            shown = event_json(row) if hide is None else hide(event_json(row))
            yield f"id: {row.seq}\ndata: {json.dumps(shown, separators=(',', ':'))}\n\n"
            if is_terminal_event(row):
                return
        now = time.monotonic()
        if rows:
            sent = now
            if len(rows) == EVENTS_MAX_PAGE:
                continue  # more are waiting
        elif ended or now - opened >= STREAM_MAX_S:
            return
        elif now - sent >= STREAM_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            sent = now
        if not rows and now - checked >= STREAM_RECHECK_S:
            checked = now
            ended = (await run_in_threadpool(store.get_job, name)).status in TERMINAL  # one more look, then end
            continue
        await asyncio.sleep(STREAM_POLL_S)


@router.get("/{name}/logs", dependencies=[Depends(require_job_read)])
def job_logs(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """The job's log files (a child job's: its parent's, as for outputs and events)."""
    folder = JobFolder.local(ctx.settings.jobs_dir, children.job_row(ctx.store, name).name)
    return {"logs": [{"name": log, "size": size} for log, size in folder.log_files()]}


@router.get("/{name}/logs/{log_name}", dependencies=[Depends(require_job_data)])
def job_log(name: str, log_name: str, offset: int = 0, ctx: AppContext = Depends(get_context)) -> PlainTextResponse:
    data = JobFolder.local(ctx.settings.jobs_dir, children.job_row(ctx.store, name).name).read_log(log_name, offset)
    if data is None:
        raise NotFoundError(f"job '{name}' has no log '{log_name}'; 'batchpoint job show -n {name}' lists its log files")
    return PlainTextResponse(data.decode("utf-8", "replace"), headers={"X-Next-Offset": str(max(0, offset) + len(data))})


@router.get("/{name}/outputs/{output_name}", dependencies=[Depends(require_job_data)])
def list_output(name: str, output_name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """An output's files (a child job's outputs are its parent's: the same files)."""
    job = children.job_row(ctx.store, name)
    output = _output(job, output_name, name)
    datastore, folder = output_location(output)
    backend = open_backend(ctx.workspace.datastore_spec(datastore))
    files = []
    if backend.is_dir(folder):
        files = [info.path[len(folder):].lstrip("/") for info in backend.iter_files(folder)]
    return {"name": output_name, "path": output["path"], "files": files}


@router.get("/{name}/outputs/{output_name}/files/{path:path}", dependencies=[Depends(require_job_data)])
def download_output(name: str, output_name: str, path: str, ctx: AppContext = Depends(get_context)) -> StreamingResponse:
    job = children.job_row(ctx.store, name)
    datastore, folder = output_location(_output(job, output_name, name))
    rel = normalize_relpath(path)
    return stream_file(ctx.workspace.datastore_spec(datastore), f"{folder}/{rel}" if folder else rel)


def _output(job: Any, output_name: str, asked: str | None = None) -> dict[str, Any]:
    outputs = job.outputs or {}
    if output_name not in outputs:
        raise NotFoundError(f"job '{asked or job.name}' has no output '{output_name}'; outputs: "
                            f"{', '.join(outputs) or 'none'}")
    return outputs[output_name]
