"""Jobs in ARM's shape: a batch job is a ``Pipeline`` job (as Azure shows one), its status the
native status (the same names), its inputs and ``score`` output as job inputs/outputs. Read under
the native rules: ``jobs/read`` on the job's endpoint, or ``jobs/read_own`` for one's own job; a
list holds the jobs the caller may read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from batchpoint.jobs.views import job_entity
from batchpoint.server.azure_api import arm
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import require_job_read, sees_server_paths, visible_job_filter
from batchpoint.usecases import reads

router = APIRouter(prefix=arm.BASE + "/jobs", include_in_schema=False)

_IO_TYPES = {"uri_folder": "uri_folder", "uri_file": "uri_file", "mltable": "mltable"}


def _stamp(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def job_body(request: Request, ctx: AppContext, row: Any) -> dict[str, Any]:
    job = job_entity(ctx.workspace, row, with_failures=False, server_paths=sees_server_paths(request))
    inputs = {k: {"jobInputType": _IO_TYPES.get(str(v.get("type")), "uri_folder"), "uri": v.get("path"),
                  "mode": "ReadOnlyMount"} for k, v in job.inputs.items()}
    outputs = {k: {"jobOutputType": _IO_TYPES.get(o.type, "uri_folder"), "uri": o.path, "mode": "ReadWriteMount"}
               for k, o in job.outputs.items()}
    props = {
        "jobType": "Pipeline", "status": job.status, "displayName": job.display_name or job.name,
        "experimentName": job.experiment_name or job.endpoint_name or "Default", "description": job.status_message,
        "isArchived": False, "inputs": inputs, "outputs": outputs, "jobs": {}, "settings": {},
        "tags": {}, "computeId": None,
        "properties": {"azureml.batchrun": "true", "azureml.endpoint_name": job.endpoint_name or "",
                       "azureml.deployment_name": job.deployment_name or "",
                       "StartTimeUtc": _stamp(job.start_time) or "", "EndTimeUtc": _stamp(job.end_time) or ""},
        "services": {"Studio": {"endpoint": f"{str(request.base_url).rstrip('/')}/ui/jobs/{job.name}",
                                "jobServiceType": "Studio"}},
    }
    return arm.resource(request, "jobs", job.name, props, "jobs", job.name,
                        systemData=arm.system_data(job.created_at, job.created_by))


@router.get("")
def list_jobs(request: Request, ctx: AppContext = Depends(get_context),
              only: str | None = Depends(visible_job_filter)) -> dict[str, Any]:
    return arm.page([job_body(request, ctx, r) for r in reads.list_jobs(ctx, created_by=only, limit=1000)])


@router.get("/{name}", dependencies=[Depends(require_job_read)])
def get_job(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return job_body(request, ctx, reads.get_job(ctx, name))
