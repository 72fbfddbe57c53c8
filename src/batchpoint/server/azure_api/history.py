"""The run-history and data-plane calls of ``jobs.download`` and ``jobs.stream``:

* ``POST /history/v1.0/{ws}/rundata`` ``{"runId": <job>}`` — the job's outputs as asset references
  (``score``: an internal data asset id naming the job);
* ``POST /data/v1.0/{ws}/dataversion/batchGetResolvedUris`` — those ids resolved to the output's
  data store URI, which the client then lists and downloads through the blob endpoint.

* ``GET /history/v1.0/{ws}/runs/<job>/details`` — status, error and ``logFiles``: each worker log
  as a URL the client fetches **without** its token (``jobs.stream`` polls them), so each URL is
  signed: ``/azure/logs?job=&log=&pr=&se=&sig=`` with an HMAC (the server's token key) over the job,
  log, principal and expiry (``LOG_URL_TTL_S``). Fetching it checks the signature and the expiry,
  then that the principal still may read the job's data (``require_job_data``, as natively).

All are read under the native job rules (``jobs/read`` on the job's endpoint, or one's own job).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from batchpoint.auth.scopes import check_job_read
from batchpoint.exceptions import AuthenticationError, NotFoundError, ValidationError
from batchpoint.server.azure_api.cloud import base_url
from batchpoint.server.security import require_job_data, require_job_read
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json_body
from batchpoint.usecases import logs as job_logs, reads

router = APIRouter(prefix=arm.BASE, include_in_schema=False)
logs_router = APIRouter(include_in_schema=False)
LOGS_PATH = "/azure/logs"
LOG_URL_TTL_S = 3600

_OUTPUT_ID = re.compile(r"^azureml://locations/[^/]+/workspaces/[^/]+/data/azureml_(?P<job>.+)_output_data_"
                        r"(?P<output>[^/]+)/versions/1$")


def _readable_job(request: Request, name: str) -> Any:
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    job = reads.job_or_parent(ctx, name)
    scope = f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"
    check_job_read(ctx.auth.assignments(principal), principal, job.created_by or "", scope)
    return job


def _output_id(job: str, output: str) -> str:
    return f"azureml://locations/local/workspaces/batchpoint/data/azureml_{job}_output_data_{output}/versions/1"


@router.post("/rundata")
async def run_data(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    name = body.get("runId")
    if not isinstance(name, str) or not name:
        raise ValidationError("rundata needs a runId: the job's name")
    job = _readable_job(request, name)
    outputs = {k: {"assetId": _output_id(name, k), "type": "uri_folder"} for k in (job.outputs or {})}
    return {"runMetadata": {"runId": name, "runUuid": name, "status": job.status, "outputs": outputs,
                            "experimentId": job.endpoint_name, "properties": {}, "tags": {}},
            "runDefinition": None, "jobSpecification": None}


@router.post("/dataversion/batchGetResolvedUris")
async def resolved_uris(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    ids = body.get("values") or []
    if not isinstance(ids, list):
        raise ValidationError("batchGetResolvedUris needs {\"values\": [<data asset ids>]}")
    out = {}
    for asset_id in ids:
        match = _OUTPUT_ID.match(str(asset_id))
        if not match:
            raise ValidationError(f"'{asset_id}' is not a job output id this server gave")
        job = _readable_job(request, match.group("job"))
        output = (job.outputs or {}).get(match.group("output"))
        if output:
            uri = output["path"].rstrip("/") + "/"
            long = uri.replace("azureml://", f"azureml://subscriptions/{arm.prefix(request).split('/')[2]}/"
                               f"resourcegroups/{arm.prefix(request).split('/')[4]}/workspaces/"
                               f"{arm.workspace_name(request)}/", 1)
            out[asset_id] = {"uri": long, "type": "UriFolder"}
    return {"values": out}


# ---- jobs.stream: run details and signed log URLs --------------------------------------------------

def _signature(key: bytes, job: str, log: str, principal: str, expiry: int) -> str:
    return hmac.new(key, f"log\0{job}\0{log}\0{principal}\0{expiry}".encode(), hashlib.sha256).hexdigest()


def _stamp(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


_WORKER_LOG = re.compile(r"^worker-(\d+)\.log$")


def _shown_name(log: str) -> str:
    """Worker n's log as Azure names a process's log (``user_logs/std_log_<n>.txt``: the client streams
    rank 0's); the others under ``logs/azureml/``."""
    match = _WORKER_LOG.match(log)
    return f"user_logs/std_log_{match.group(1)}.txt" if match else f"logs/azureml/{log}"


@router.get("/runs/{name}/details", dependencies=[Depends(require_job_read)])
def run_details(name: str, request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    job = reads.job_or_parent(ctx, name)
    principal = request.state.principal_id
    expiry = int(time.time()) + LOG_URL_TTL_S
    logs = {}
    for log, _ in job_logs.folder_of(ctx, job).log_files():
        query = urlencode({"job": name, "log": log, "pr": principal, "se": expiry,
                           "sig": _signature(ctx.auth.signing_key, name, log, principal, expiry)})
        logs[_shown_name(log)] = f"{base_url(request)}{LOGS_PATH}?{query}"
    details: dict[str, Any] = {"runId": name, "status": job.status, "target": "local", "logFiles": logs,
                               "startTimeUtc": _stamp(job.start_time), "endTimeUtc": _stamp(job.end_time),
                               "warnings": [], "properties": {}, "inputDatasets": [], "outputDatasets": []}
    if job.error:
        details["error"] = {"error": {"code": str(job.error.get("code", "UserError")),
                                      "message": str(job.error.get("message", job.status_message or ""))}}
    return details


@logs_router.get(LOGS_PATH)
def signed_log(request: Request, job: str, log: str, pr: str, se: int, sig: str) -> PlainTextResponse:
    ctx = request.app.state.ctx
    expected = _signature(ctx.auth.signing_key, job, log, pr, se)
    if not hmac.compare_digest(expected, sig) or se < time.time():
        raise AuthenticationError("this log URL is not valid or has expired; get a fresh one from the job's "
                                  "run details (jobs.stream does)")
    # the principal must still be allowed to read the job's data, as GET /jobs/<job>/logs/<log> requires
    require_job_data(SimpleNamespace(app=request.app, state=SimpleNamespace(principal_id=pr),  # type: ignore[arg-type]
                                     path_params={"name": job}))
    data = job_logs.log_bytes(ctx, reads.job_or_parent(ctx, job), log)
    if data is None:
        raise NotFoundError(f"job '{job}' has no log '{log}'")
    return PlainTextResponse(data.decode("utf-8", "replace"))
