"""Batch endpoints, their deployments, and invoke: parse, call the workspace's services, map."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import BatchEndpoint
from batchpoint.exceptions import ValidationError
from batchpoint.jobs import deletes
from batchpoint.jobs.idempotency import fingerprint, request_key, run_once
from batchpoint.jobs.submit import submit_job
from batchpoint.jobs.views import job_entity
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import Page, page
from batchpoint.server.schemas import parse_invoke_body
from batchpoint.server.security import endpoint_scope, requires, sees_server_paths, visible_job_filter

router = APIRouter(prefix="/batchEndpoints")


def _shown(endpoint: BatchEndpoint, request: Request) -> dict[str, Any]:
    """The endpoint as clients see it: ``scoring_uri`` is a full URL of this server (curl-able)."""
    body = endpoint.to_dict()
    body["scoring_uri"] = str(request.base_url).rstrip("/") + (endpoint.scoring_uri or "")
    return body


def visible_endpoints(request: Request) -> Any:
    """For the endpoint list: None when the caller may read every endpoint (``endpoints/read`` on
    the workspace), else a test of one endpoint's name (the role is on that endpoint only, as an
    endpoint-scoped Invoker's); 403 when no role of the caller reads endpoints anywhere."""
    from batchpoint.auth.scopes import authorize, missing_permission_error

    principal = request.state.principal_id
    own = request.app.state.ctx.auth.assignments(principal)
    if authorize(own, P.ENDPOINTS_READ, "workspace"):
        return None
    if not any(P.ENDPOINTS_READ in P.role_permissions(a.role) for a in own):
        raise missing_permission_error(principal, P.ENDPOINTS_READ, "workspace")
    return lambda name: authorize(own, P.ENDPOINTS_READ, f"endpoint:{name}")


visible_endpoints.permission = P.ENDPOINTS_READ  # type: ignore[attr-defined]
visible_endpoints.scope_name = "visible_endpoints"  # type: ignore[attr-defined]


@router.get("", tags=["batch endpoints"])
def list_endpoints(request: Request, ctx: AppContext = Depends(get_context),
                   shown: Any = Depends(visible_endpoints)) -> list[dict[str, Any]]:
    """The endpoints the caller may read: all of them with ``endpoints/read`` on the workspace,
    else those their endpoint-scoped roles name (as job lists show one's own jobs)."""
    return [_shown(ctx.workspace.endpoint_entity(r), request) for r in ctx.store.list_endpoints()
            if shown is None or shown(r.name)]


@router.put("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def put_endpoint(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(ctx.endpoints.put_endpoint(name, body), request)


@router.patch("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def update_endpoint(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(ctx.endpoints.update_endpoint(name, body), request)


@router.get("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def get_endpoint(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(ctx.workspace.endpoint_entity(ctx.store.get_endpoint(name)), request)


@router.delete("/{name}", tags=["batch endpoints"], status_code=204, dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def delete_endpoint(name: str, force: bool = False, ctx: AppContext = Depends(get_context)) -> None:
    deletes.delete_endpoint(ctx.store, ctx.endpoints, ctx.dispatcher.cancel, name, force)


@router.post("/{name}/invoke", tags=["batch endpoints"], status_code=202, dependencies=[requires(P.ENDPOINTS_INVOKE, endpoint_scope)])
async def invoke(name: str, request: Request, response: Response, ctx: AppContext = Depends(get_context),
                 azureml_model_deployment: str | None = Header(default=None)) -> dict[str, Any]:
    row = await start_invoke(ctx, request, response, name, azureml_model_deployment)
    return job_entity(ctx.workspace, row, with_failures=False, server_paths=sees_server_paths(request)).to_dict()


async def start_invoke(ctx: AppContext, request: Request, response: Response, name: str,
                       deployment_header: str | None, shape: Callable[[Any], Any] = lambda body: body) -> Any:
    """Invoke ``name`` with the request's JSON body, made by ``shape`` into an invoke body of the
    spec's shape (``{"properties": {"InputData": …}}``): idempotent under
    ``repeatability-request-id``, audited, the dispatcher woken. The native and the Azure-shaped
    invoke routes both call it; returns the job's row."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValidationError(f"the invoke body is not valid JSON: {exc}") from exc
    invoke_request = parse_invoke_body(shape(body), deployment_header)
    user = getattr(request.state, "principal_id", None)
    assignments = await run_in_threadpool(ctx.auth.assignments, user) if user else []
    key = request_key(request.headers)  # idempotent invoke (jobs/idempotency.py)
    if key is None:
        row = await run_in_threadpool(submit_job, ctx.workspace, name, invoke_request, user, assignments)
    else:
        row, _ = await run_in_threadpool(
            run_once, ctx.store, key, user, fingerprint(f"invoke {name}", body, deployment_header),
            invoke_request.job_name,
            lambda job_name: submit_job(ctx.workspace, name, replace(invoke_request, job_name=job_name), user, assignments))
        response.headers["repeatability-result"] = "accepted"
    request.state.audit = {"action": "invoke", "endpoint": name, "deployment": row.deployment_name, "job": row.name,
                           "inputs": {k: {"path": v["path"], "type": v["type"], "credential_kind": v["credential_kind"]}
                                      for k, v in row.inputs.items()}}
    ctx.dispatcher.notify()
    return row


@router.get("/{name}/jobs", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def endpoint_jobs(name: str, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
                  paths: bool = Depends(sees_server_paths),
                  only: str | None = Depends(visible_job_filter)) -> list[dict[str, Any]]:
    ctx.store.get_endpoint(name)
    rows = ctx.store.list_jobs(endpoint=name, created_by=only, limit=p.limit, offset=p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]


# ---- deployments -------------------------------------------------------------------------------

@router.get("/{endpoint}/deployments", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def list_deployments(endpoint: str, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    ctx.store.get_endpoint(endpoint)
    return [ctx.workspace.deployment_entity(r).to_dict() for r in ctx.store.list_deployments(endpoint)]


@router.put("/{endpoint}/deployments/{name}", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
def put_deployment(endpoint: str, name: str, body: dict[str, Any], request: Request, set_default: bool = False,
                   ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.endpoints.put_deployment(endpoint, name, body, set_default, caller=request_caller(request, ctx)).to_dict()


@router.patch("/{endpoint}/deployments/{name}", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
def update_deployment(endpoint: str, name: str, body: dict[str, Any], request: Request,
                      ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.endpoints.update_deployment(endpoint, name, body, caller=request_caller(request, ctx)).to_dict()


def request_caller(request: Request, ctx: AppContext) -> tuple[str | None, list[Any]]:
    """The calling principal and its assignments: a deployment's code folder or inline model in the
    upload area or jobs' area is checked as an invoke on it would be (issue 18 §4)."""
    principal = getattr(request.state, "principal_id", None)
    return principal, (ctx.auth.assignments(principal) if principal else [])


@router.get("/{endpoint}/deployments/{name}", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def get_deployment(endpoint: str, name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.deployment_entity(ctx.store.get_deployment(endpoint, name)).to_dict()


@router.delete("/{endpoint}/deployments/{name}", tags=["batch deployments"], status_code=204, dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
def delete_deployment(endpoint: str, name: str, force: bool = False, ctx: AppContext = Depends(get_context)) -> None:
    deletes.delete_deployment(ctx.store, ctx.endpoints, ctx.dispatcher.cancel, endpoint, name, force)


@router.get("/{endpoint}/deployments/{name}/jobs", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def deployment_jobs(endpoint: str, name: str, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
                    paths: bool = Depends(sees_server_paths),
                    only: str | None = Depends(visible_job_filter)) -> list[dict[str, Any]]:
    ctx.store.get_deployment(endpoint, name)
    rows = ctx.store.list_jobs(endpoint=endpoint, deployment=name, created_by=only, limit=p.limit, offset=p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]
