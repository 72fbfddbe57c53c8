"""Batch endpoints, deployments and invoke in ARM's shape, through the native ``EndpointService``
and the native invoke (``routers/endpoints.start_invoke``). Creates answer 200 with
``provisioningState: Succeeded`` (nothing is provisioned: no long-running operation to poll).

The invoke body the client sends (camelCase: ``inputData``, ``outputData``/``outputDataset``,
``miniBatchSize``, ``compute.instanceCount``, ``retrySettings`` with ISO-8601 durations,
``errorThreshold``, ``loggingLevel``, ``outputFileName``, ``name``, ``properties.experimentName``)
becomes the native invoke body; the answer is the job in ARM's shape, 200.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import BatchDeployment, BatchEndpoint
from batchpoint.exceptions import ValidationError
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json, asset_ref, short_uri
from batchpoint.server.azure_api.code_env import code_path
from batchpoint.server.azure_api.jobs import job_body
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.routers.endpoints import request_caller, start_invoke, visible_endpoints
from batchpoint.server.security import endpoint_scope, requires, visible_job_filter
from batchpoint.usecases import deletes, reads

router = APIRouter(prefix=arm.BASE + "/batchendpoints", include_in_schema=False)

_OUTPUT_ACTIONS = {"appendrow": "append_row", "summaryonly": "summary_only"}
_REST_OUTPUT_ACTIONS = {"append_row": "AppendRow", "summary_only": "SummaryOnly"}


# ---- endpoints ---------------------------------------------------------------------------------

def endpoint_body(request: Request, ep: BatchEndpoint) -> dict[str, Any]:
    path = ("batchEndpoints", ep.name)
    scoring = f"{str(request.base_url).rstrip('/')}{arm.arm_id(request, *path)}/jobs"
    props = {"authMode": "AADToken", "description": ep.description, "provisioningState": "Succeeded",
             "scoringUri": scoring, "swaggerUri": None,
             "defaults": {"deploymentName": ep.default_deployment_name} if ep.default_deployment_name else {},
             "properties": {}}
    return arm.resource(request, "batchEndpoints", ep.name, props, *path, location="local", tags=ep.tags or {},
                        identity={"type": "SystemAssigned"}, systemData=arm.system_data(ep.created_at))


def _endpoint_request(body: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    defaults = props.get("defaults") or {}
    out: dict[str, Any] = {"description": props.get("description"), "tags": body.get("tags") or {}}
    if defaults.get("deploymentName"):
        out["defaults"] = {"deployment_name": defaults["deploymentName"]}
    return {k: v for k, v in out.items() if v is not None}


@router.get("")
def list_endpoints(request: Request, ctx: AppContext = Depends(get_context),
                   shown: Any = Depends(visible_endpoints)) -> dict[str, Any]:
    """The endpoints the caller may read, as the native list shows them."""
    return arm.page([endpoint_body(request, e) for e in reads.list_endpoints(ctx, shown)])


@router.get("/{name}", dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def get_endpoint(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return endpoint_body(request, reads.get_endpoint(ctx, name))


@router.put("/{name}", dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
async def put_endpoint(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    body = await request.json()
    spec = _endpoint_request(body, await _json(request))
    return endpoint_body(request, await run_in_threadpool(ctx.endpoints.put_endpoint, name, spec))


@router.patch("/{name}", dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
async def update_endpoint(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    body = await request.json()
    spec = _endpoint_request(body, body.get("properties") or {})
    return endpoint_body(request, await run_in_threadpool(ctx.endpoints.update_endpoint, name, spec))


@router.delete("/{name}", status_code=200, dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def delete_endpoint(name: str, ctx: AppContext = Depends(get_context)) -> Response:
    """As the native delete without ``force``: a 409 naming the endpoint's queued or running jobs
    (ARM's delete has no way to ask for their cancel: cancel them, then delete)."""
    deletes.delete_endpoint(ctx, name)
    return Response(status_code=200)


# ---- deployments -------------------------------------------------------------------------------

def deployment_body(request: Request, dep: BatchDeployment) -> dict[str, Any]:
    s = dep.settings
    model = dep.model if isinstance(dep.model, str) else None
    props: dict[str, Any] = {
        "description": dep.description, "provisioningState": "Succeeded", "compute": dep.compute,
        "model": {"referenceType": "Id", "assetId": _model_id(request, model)} if model else None,
        "resources": {"instanceCount": dep.resources.instance_count, "instanceType": dep.resources.instance_type,
                      "properties": dep.resources.properties},
        "maxConcurrencyPerInstance": s.max_concurrency_per_instance, "miniBatchSize": s.mini_batch_size,
        "outputAction": _REST_OUTPUT_ACTIONS[s.output_action], "outputFileName": s.output_file_name,
        "retrySettings": {"maxRetries": s.retry_settings.max_retries,
                          "timeout": arm.iso_duration(s.retry_settings.timeout)},
        "errorThreshold": s.error_threshold, "loggingLevel": s.logging_level.capitalize(),
        "environmentVariables": s.environment_variables, "properties": dep.properties or {},
    }
    if dep.code_configuration:
        props["codeConfiguration"] = {"codeId": dep.code_configuration.code,
                                      "scoringScript": dep.code_configuration.scoring_script}
    if isinstance(dep.environment, str):
        props["environmentId"] = dep.environment
    return arm.resource(request, "batchEndpoints/deployments", dep.name, props, "batchEndpoints",
                        dep.endpoint_name, "deployments", dep.name, location="local", tags=dep.tags or {},
                        systemData=arm.system_data(dep.created_at))


def _model_id(request: Request, ref: str) -> str:
    """``azureml:heart:1`` → the ARM id the client parses back."""
    if ref.startswith("azureml:") and not ref.startswith("azureml://"):
        name, _, version = ref[len("azureml:"):].partition(":")
        if version:
            return arm.arm_id(request, "models", name, "versions", version)
    return ref


def _deployment_request(ctx: AppContext, body: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    model = props.get("model") or {}
    if not isinstance(model, dict) or not (model.get("assetId") or model.get("uri")):
        raise ValidationError("properties.model is required: {\"referenceType\": \"Id\", \"assetId\": "
                              "\"<the model's ARM id or azureml:<name>:<version>>\"}")
    retry = props.get("retrySettings") or {}
    settings: dict[str, Any] = {
        "max_concurrency_per_instance": props.get("maxConcurrencyPerInstance"),
        "mini_batch_size": props.get("miniBatchSize"), "output_file_name": props.get("outputFileName"),
        "error_threshold": props.get("errorThreshold"), "logging_level": props.get("loggingLevel"),
        "environment_variables": props.get("environmentVariables"),
    }
    if props.get("outputAction"):
        action = _OUTPUT_ACTIONS.get(str(props["outputAction"]).replace("_", "").lower())
        if action is None:
            raise ValidationError(f"outputAction '{props['outputAction']}' is not valid; valid: AppendRow, SummaryOnly")
        settings["output_action"] = action
    if retry:
        settings["retry_settings"] = {k: v for k, v in {
            "max_retries": retry.get("maxRetries"),
            "timeout": arm.seconds_of(retry.get("timeout"), "retrySettings.timeout")}.items() if v is not None}
    resources = props.get("resources") or {}
    out: dict[str, Any] = {
        "description": props.get("description"), "tags": body.get("tags") or {},
        "properties": props.get("properties") or {},
        "model": asset_ref(model.get("assetId") or short_uri(model.get("uri"))),
        "compute": _compute_name(props.get("compute")),
        "resources": {k: v for k, v in {"instance_count": resources.get("instanceCount"),
                                        "instance_type": resources.get("instanceType")}.items() if v is not None},
        "settings": {k: v for k, v in settings.items() if v is not None},
    }
    code = props.get("codeConfiguration")
    if code:
        out["code_configuration"] = {"code": code_path(ctx, code.get("codeId") or ""),
                                     "scoring_script": code.get("scoringScript")}
    if props.get("environmentId"):
        out["environment"] = asset_ref(props["environmentId"])
    return {k: v for k, v in out.items() if v not in (None, {}, "")}


def _compute_name(value: Any) -> str | None:
    """The client sends the compute's ARM id; the native deployment names it."""
    if not value:
        return None
    text = str(value)
    return text.rstrip("/").rsplit("/computes/", 1)[-1] if "/computes/" in text.lower() else text.replace("azureml:", "")


@router.get("/{endpoint}/deployments", dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def list_deployments(endpoint: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return arm.page([deployment_body(request, d) for d in reads.list_deployments(ctx, endpoint)])


@router.get("/{endpoint}/deployments/{name}", dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def get_deployment(endpoint: str, name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return deployment_body(request, reads.get_deployment(ctx, endpoint, name))


@router.put("/{endpoint}/deployments/{name}", dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
async def put_deployment(endpoint: str, name: str, request: Request,
                         ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    body = await request.json()
    props = await _json(request)
    spec = await run_in_threadpool(_deployment_request, ctx, body, props)
    caller = await run_in_threadpool(request_caller, request, ctx)  # issue 18 §4: code in another's upload
    dep = await run_in_threadpool(ctx.endpoints.put_deployment, endpoint, name, spec, False, caller)
    return deployment_body(request, dep)


@router.delete("/{endpoint}/deployments/{name}", status_code=200,
               dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
def delete_deployment(endpoint: str, name: str, ctx: AppContext = Depends(get_context)) -> Response:
    deletes.delete_deployment(ctx, endpoint, name)  # a 409 naming its unfinished jobs, as the native delete
    return Response(status_code=200)


# ---- invoke and the endpoint's jobs ------------------------------------------------------------

def _uris(io: Any) -> Any:
    """Each input's or output's ``uri`` as the native parser reads it: an asset's ARM id becomes
    ``azureml:<name>:<version>``, a long ``azureml://subscriptions/…/datastores/…`` URI the short form."""
    if not isinstance(io, dict):
        return io
    return {k: {**v, "uri": short_uri(asset_ref(v["uri"]))} if isinstance(v, dict) and isinstance(v.get("uri"), str)
            else v for k, v in io.items()}


def native_invoke_body(body: Any) -> dict[str, Any]:
    """The client's camelCase invoke body → the spec's invoke body (``routers/endpoints``)."""
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise ValidationError("the invoke body must be {\"properties\": {\"inputData\": {...}}}")
    p = body["properties"]
    out: dict[str, Any] = {"InputData": _uris(p.get("inputData") or p.get("InputData") or {})}
    if p.get("outputData"):
        out["OutputData"] = _uris(p["outputData"])
    elif isinstance(p.get("outputDataset"), dict) and p["outputDataset"].get("path"):
        store = str(p["outputDataset"].get("datastoreId") or "").rstrip("/").rsplit("/", 1)[-1]
        out["OutputData"] = {"score": {"JobOutputType": "UriFolder",
                                       "Uri": f"azureml://datastores/{store}/paths/{p['outputDataset']['path']}"}}
    settings: dict[str, Any] = {}
    for key, native in (("miniBatchSize", "mini_batch_size"), ("errorThreshold", "error_threshold"),
                        ("loggingLevel", "logging_level"), ("maxConcurrencyPerInstance", "max_concurrency_per_instance")):
        if p.get(key) is not None:
            settings[native] = p[key]
    if (p.get("compute") or {}).get("instanceCount") is not None:
        settings["instance_count"] = p["compute"]["instanceCount"]
    retry = p.get("retrySettings") or {}
    if retry.get("maxRetries") is not None:
        settings["max_retries"] = retry["maxRetries"]
    if retry.get("timeout") is not None:
        settings["timeout"] = arm.seconds_of(retry["timeout"], "retrySettings.timeout")
    if settings:
        out["Settings"] = settings
    if p.get("outputFileName"):
        out["OutputFileName"] = p["outputFileName"]
    if p.get("name"):
        out["JobName"] = p["name"]
    experiment = (p.get("properties") or {}).get("experimentName") or p.get("experimentName")
    if experiment:
        out["ExperimentName"] = experiment
    return {"properties": out}


@router.post("/{name}/jobs", dependencies=[requires(P.ENDPOINTS_INVOKE, endpoint_scope)])
async def invoke(name: str, request: Request, response: Response, ctx: AppContext = Depends(get_context),
                 azureml_model_deployment: str | None = Header(default=None)) -> dict[str, Any]:
    row = await start_invoke(ctx, request, response, name, azureml_model_deployment, shape=native_invoke_body)
    return await run_in_threadpool(job_body, request, ctx, row)


@router.get("/{name}/jobs", dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def endpoint_jobs(name: str, request: Request, ctx: AppContext = Depends(get_context),
                  only: str | None = Depends(visible_job_filter)) -> dict[str, Any]:
    rows = reads.endpoint_jobs(ctx, name, only, 1000)
    return arm.page([job_body(request, ctx, r) for r in rows])
