"""The run-history and data-plane calls ``jobs.download`` makes before it reads the files:

* ``POST /history/v1.0/{ws}/rundata`` ``{"runId": <job>}`` — the job's outputs as asset references
  (``score``: an internal data asset id naming the job);
* ``POST /data/v1.0/{ws}/dataversion/batchGetResolvedUris`` — those ids resolved to the output's
  data store URI, which the client then lists and downloads through the blob endpoint.

Both are read under the native job rules (``jobs/read`` on the job's endpoint, or one's own job).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from batchpoint.auth.scopes import check_job_read
from batchpoint.exceptions import ValidationError
from batchpoint.jobs import children
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json_body

router = APIRouter(prefix=arm.BASE, include_in_schema=False)

_OUTPUT_ID = re.compile(r"^azureml://locations/[^/]+/workspaces/[^/]+/data/azureml_(?P<job>.+)_output_data_"
                        r"(?P<output>[^/]+)/versions/1$")


def _readable_job(request: Request, name: str) -> Any:
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    job = children.job_row(ctx.store, name)
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
