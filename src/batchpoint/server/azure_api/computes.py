"""Computes in ARM's shape (``computeType: AmlCompute``), stored as the native ``AmlCompute``:
VM size, tier and scale settings are kept; on this server they run as local processes (or on the
Ray cluster of a native compute of type ray, shown here as AmlCompute). Created at once:
``provisioningState: Succeeded``, no long-running operation to poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import AmlCompute
from batchpoint.exceptions import ValidationError
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.usecases import reads

router = APIRouter(prefix=arm.BASE, include_in_schema=False)


def compute_body(request: Request, compute: AmlCompute) -> dict[str, Any]:
    inner = {"vmSize": compute.size or "STANDARD_DS3_V2", "vmPriority": "LowPriority" if compute.tier == "low_priority"
             else "Dedicated",
             "scaleSettings": {"minNodeCount": compute.min_instances, "maxNodeCount": compute.max_instances,
                               "nodeIdleTimeBeforeScaleDown": arm.iso_duration(compute.idle_time_before_scale_down)},
             "allocationState": "Steady", "currentNodeCount": 0, "targetNodeCount": 0,
             "osType": "Linux", "remoteLoginPortPublicAccess": "NotSpecified"}
    props = {"computeType": "AmlCompute", "provisioningState": "Succeeded", "description": compute.description,
             "computeLocation": compute.location or "local", "isAttachedCompute": False,
             "disableLocalAuth": True, "properties": inner}
    return arm.resource(request, "computes", compute.name, props, "computes", compute.name,
                        location=compute.location or "local", tags=compute.tags or {},
                        systemData=arm.system_data(compute.created_at))


@router.get("/computes", dependencies=[requires(P.COMPUTES_READ)])
def list_computes(request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return arm.page([compute_body(request, c) for c in reads.list_computes(ctx)])


@router.get("/computes/{name}", dependencies=[requires(P.COMPUTES_READ)])
def get_compute(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return compute_body(request, reads.get_compute(ctx, name))


@router.put("/computes/{name}", dependencies=[requires(P.COMPUTES_WRITE)])
async def put_compute(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    body = await request.json()
    props = await _json(request)
    kind = props.get("computeType")
    if kind not in (None, "AmlCompute"):
        raise ValidationError(f"computeType '{kind}' is not supported; Batchpoint runs batch jobs on AmlCompute "
                              "(clusters; they run as local processes here)")
    inner = props.get("properties") or {}
    scale = inner.get("scaleSettings") or {}
    compute = AmlCompute(
        name=name, description=props.get("description"), size=inner.get("vmSize"),
        tier="low_priority" if str(inner.get("vmPriority", "")).lower() == "lowpriority" else "dedicated",
        location=body.get("location"), tags=body.get("tags") or {},
        min_instances=int(scale.get("minNodeCount") or 0), max_instances=int(scale.get("maxNodeCount") or 1),
        idle_time_before_scale_down=arm.seconds_of(scale.get("nodeIdleTimeBeforeScaleDown"),
                                                   "scaleSettings.nodeIdleTimeBeforeScaleDown"))
    return compute_body(request, await run_in_threadpool(ctx.workspace.put_compute, compute))
