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
from batchpoint.jobs.views import job_entity
from batchpoint.server.ui.auth import Access
from batchpoint.usecases import logs, outputs, reads, workers

MAX_ERRORS_SHOWN = 1000
TERMINAL = ("Completed", "Failed", "Canceled")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def needs(access: Access, permission: str, scope: str = "workspace") -> str:
    return f"{access.principal} may not see this: it needs {permission} on {scope}"


def endpoints(ctx: Any, access: Access) -> dict[str, Any]:
    """Every endpoint the principal may read: all with endpoints/read on the workspace, else those
    its endpoint-scoped roles name (an Invoker of one endpoint sees that one), as the API's list."""
    rows = reads.list_endpoints(ctx, lambda name: access.may(P.ENDPOINTS_READ, f"endpoint:{name}"))
    if not rows and not access.may_anywhere(P.ENDPOINTS_READ):
        return {"denied": needs(access, P.ENDPOINTS_READ), "endpoints": []}
    shown = []
    for endpoint in rows:
        scope = f"endpoint:{endpoint.name}"
        deployments = None
        if access.may(P.DEPLOYMENTS_READ, scope):
            deployments = reads.list_deployments(ctx, endpoint.name)
        shown.append({"endpoint": endpoint, "deployments": deployments,
                      "deployments_denied": None if deployments is not None else needs(access, P.DEPLOYMENTS_READ, scope)})
    return {"denied": None, "endpoints": shown}


STATUSES = ("Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def status_label(job: Any) -> tuple[str, str]:
    """(text, css class) of a job's status: a Completed job with failed files says so, with the count."""
    failed = job.progress.files_failed if hasattr(job, "progress") else job.files_failed
    if job.status == "Completed" and failed:
        return f"Completed with {failed} failed file{'s' if failed != 1 else ''}", "status-completed-failures"
    return job.status, f"status-{job.status.lower()}"


def duration(job: Any) -> str:
    """From its start to its end (or now, while it runs); empty before it started."""
    from batchpoint._internal.clock import as_utc, utcnow

    start = as_utc(job.start_time)
    if start is None:
        return ""
    seconds = max(0, int(((as_utc(job.end_time) or utcnow()) - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def jobs(ctx: Any, access: Access, endpoint: str | None = None, status: str | None = None, user: str | None = None,
         page: int = 1, size: int = PAGE_SIZE) -> dict[str, Any]:
    """A page of ``size`` jobs, newest first, filtered by status, endpoint and who started it."""
    only = access.job_filter()
    endpoints = [e.name for e in reads.list_endpoints(ctx)]
    filters = {"endpoint": endpoint or "", "status": status or "", "user": user or "",
               "size": "" if size == PAGE_SIZE else str(size)}
    if only is False:
        return {"denied": needs(access, P.JOBS_READ_OWN), "jobs": [], "filters": filters, "statuses": STATUSES,
                "endpoint_names": endpoints, "page": 1, "next_page": None}
    page = max(1, page)
    created_by = only if only is not None else (user or None)
    rows = [] if only is not None and user and user != only else reads.list_jobs(ctx, 
        endpoint=endpoint, created_by=created_by, limit=size + 1, offset=(page - 1) * size,
        statuses=[status] if status else None)
    shown = []
    for r in rows[:size]:
        entity = job_entity(ctx.workspace, r, with_failures=False)
        text, css = status_label(entity)
        shown.append({"job": entity, "status_text": text, "status_class": css, "duration": duration(entity)})
    return {"denied": None, "jobs": shown, "own_only": only is not None, "filters": filters, "statuses": STATUSES,
            "endpoint_names": endpoints, "page": page, "next_page": page + 1 if len(rows) > size else None}


def servers(ctx: Any, access: Access) -> dict[str, Any]:
    """The workspace's servers (server/instance.py), its Ray clusters (computes of type ray) and the
    workers and Ray actors this server keeps warm (usecases/workers.py)."""
    from datetime import timedelta

    from batchpoint._internal.clock import as_utc, utcnow

    if not access.may(P.WORKSPACE_READ):
        return {"denied": needs(access, P.WORKSPACE_READ), "servers": [], "clusters": None, "clusters_denied": None,
                "warm": [], "warm_actors": []}
    alive_after = utcnow() - timedelta(seconds=ctx.settings.jobs.heartbeat_interval_s * 3)
    running = reads.running_jobs_per_server(ctx)
    shown = [{"row": r, "alive": as_utc(r.seen_at) > alive_after, "this": r.id == ctx.dispatcher.owner,
              "jobs": running.get(r.id, 0)} for r in reads.servers(ctx)]
    clusters = None
    if access.may(P.COMPUTES_READ):
        clusters = reads.list_computes(ctx, kind="ray")
    return {"denied": None, "servers": shown, "clusters": clusters,
            "clusters_denied": None if clusters is not None else needs(access, P.COMPUTES_READ),
            "warm": [{**d, "memory": mebibytes(d["memory_bytes"]), "idle_left": idle_left(d["idle_left_s"])}
                     for d in workers.warm_workers()],
            "warm_actors": [{**d, "cpus": f"{d['cpus']:g}", "idle_left": idle_left(d["idle_left_s"])}
                            for d in workers.warm_actors()]}


def mebibytes(count: int) -> str:
    return f"{count / (1 << 20):.0f} MiB"


def idle_left(seconds: list[float | None]) -> str:
    """Each warm worker's idle time left as one line: ``4m 10s``, or the soonest to the latest;
    those its compute's min_instances keeps past it (None) counted first."""
    def shown(s: float) -> str:
        whole = int(s)
        return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"

    kept = sum(1 for s in seconds if s is None)
    timed = [s for s in seconds if s is not None]
    text = ""
    if timed:
        first, last = shown(min(timed)), shown(max(timed))
        text = first if first == last else f"{first} to {last}"
    if kept:
        text = f"{kept} kept (compute min_instances)" + (f"; {text}" if text else "")
    return text


def readable_job(ctx: Any, access: Access, name: str, data: bool = False) -> Any:
    """The job's row if the principal may read it (``data``: its outputs, logs, errors file)."""
    job = reads.get_job(ctx, name)
    if data and not access.may_read_job_data(job):
        raise PermissionDeniedError(needs(access, P.JOBS_OUTPUTS_READ, access.job_scope(job)))
    if not data and not access.may_read_job(job):
        raise PermissionDeniedError(needs(access, P.JOBS_READ, access.job_scope(job)))
    return job


def job_pictures(ctx: Any, row: Any, data: bool) -> dict[str, Any]:
    """The charts of rows/s and mini-batches done over time (from the job's progress events) and,
    with the job's data permission (they are read from its worker logs), the per-worker timeline."""
    from batchpoint._internal.clock import as_utc
    from batchpoint.server.ui import charts

    events = reads.progress_events(ctx, row.name)
    progress = charts.progress_charts(charts.progress_series(events, as_utc(row.start_time)))
    timeline, cut = None, False
    if data:
        spans, cut = charts.worker_spans(logs.worker_logs(ctx, row), reads.failures_per_mini_batch(ctx, row.name))
        timeline = charts.worker_timeline(spans)
    return {"charts": progress, "timeline": timeline, "timeline_cut": cut}


def job(ctx: Any, access: Access, name: str, pictures: bool = True) -> dict[str, Any]:
    """The job page's values; ``pictures``: with its charts (read from every progress event)."""
    row = readable_job(ctx, access, name)
    entity = job_entity(ctx.workspace, row, server_paths=access.sees_server_paths())
    data = access.may_read_job_data(row)
    text, css = status_label(entity)
    return {"job": entity, "data_allowed": data, "data_denied": None if data else needs(
                access, P.JOBS_OUTPUTS_READ, access.job_scope(row)),
            "status_text": text, "status_class": css, "duration": duration(entity),
            **(job_pictures(ctx, row, data) if pictures else {}),
            "files": outputs.output_files(ctx, row) if data and row.status in TERMINAL else [],
            "may_cancel": access.may(P.JOBS_CANCEL, access.job_scope(row)) and row.status not in TERMINAL,
            "terminal": row.status in TERMINAL, "errors_file_name": errors_file_name(row),
            "initial": json.dumps({"name": entity.name, "status": entity.status,
                                   "progress": entity.progress.to_dict()})}


def job_json(ctx: Any, access: Access, name: str) -> dict[str, Any]:
    values = job(ctx, access, name, pictures=False)  # the summary shows no chart
    entity = values["job"]
    return {"status": entity.status, "status_text": values["status_text"], "status_class": values["status_class"],
            "status_message": entity.status_message, "progress": entity.progress.to_dict(),
            "phases": entity.phases, "errors": entity.errors, "files": values["files"],
            "log_files": entity.log_files if values["data_allowed"] else []}


def job_errors(ctx: Any, access: Access, name: str) -> dict[str, Any]:
    """The errors file's lines (data: needs the job's data permission), else the failures as recorded."""
    row = readable_job(ctx, access, name)
    entity = job_entity(ctx.workspace, row, server_paths=access.sees_server_paths())
    lines: list[dict[str, Any]] = []
    note = None
    if access.may_read_job_data(row):
        try:
            found = outputs.errors_file_lines(ctx, row)
            if found is not None:
                for number, line in enumerate(found):
                    if number >= MAX_ERRORS_SHOWN:
                        note = f"the first {MAX_ERRORS_SHOWN} lines are shown; download the file for all"
                        break
                    lines.append(line)
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
        data = reads.list_assets(ctx, "data")
    if access.may(P.MODELS_READ):
        models = reads.list_assets(ctx, "models")
    return {"data": data, "models": models, "data_denied": None if data is not None else needs(access, P.ASSETS_READ),
            "models_denied": None if models is not None else needs(access, P.MODELS_READ)}
