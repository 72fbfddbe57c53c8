"""Batch endpoints, their deployments, and invoke: parse, call a use case (``batchpoint.usecases``), map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import BatchEndpoint
from batchpoint.exceptions import ValidationError
from batchpoint.jobs.idempotency import request_key
from batchpoint.jobs.views import job_entity
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import Page, page
from batchpoint.server.schemas import parse_invoke_body
from batchpoint.server.security import endpoint_scope, requires, sees_server_paths, visible_job_filter
from batchpoint.usecases import deletes, reads
from batchpoint.usecases.invoke import invoke as invoke_endpoint
from batchpoint.usecases.start import Started

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
    return [_shown(e, request) for e in reads.list_endpoints(ctx, shown)]


@router.put("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def put_endpoint(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(ctx.endpoints.put_endpoint(name, body), request)


@router.patch("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def update_endpoint(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(ctx.endpoints.update_endpoint(name, body), request)


@router.get("/{name}", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def get_endpoint(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(reads.get_endpoint(ctx, name), request)


@router.delete("/{name}", tags=["batch endpoints"], status_code=204, dependencies=[requires(P.ENDPOINTS_WRITE, endpoint_scope)])
def delete_endpoint(name: str, force: bool = False, ctx: AppContext = Depends(get_context)) -> None:
    deletes.delete_endpoint(ctx, name, force)


@router.post("/{name}/invoke", tags=["batch endpoints"], status_code=202, dependencies=[requires(P.ENDPOINTS_INVOKE, endpoint_scope)])
async def invoke(name: str, request: Request, response: Response, ctx: AppContext = Depends(get_context),
                 azureml_model_deployment: str | None = Header(default=None)) -> dict[str, Any]:
    row = await start_invoke(ctx, request, response, name, azureml_model_deployment)
    return job_entity(ctx.workspace, row, with_failures=False, server_paths=sees_server_paths(request)).to_dict()


async def start_invoke(ctx: AppContext, request: Request, response: Response, name: str,
                       deployment_header: str | None, shape: Callable[[Any], Any] = lambda body: body) -> Any:
    """Parse the request's JSON body (made by ``shape`` into an invoke body of the spec's shape,
    ``{"properties": {"InputData": …}}``), call the invoke use case (``usecases/invoke.py``) and map
    its answer (``repeatability-result``, the audit record). The native and the Azure-shaped invoke
    routes both call it; returns the job's row."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValidationError(f"the invoke body is not valid JSON: {exc}") from exc
    invoke_request = parse_invoke_body(shape(body), deployment_header)
    key = request_key(request.headers)  # idempotent invoke (jobs/idempotency.py)
    started = await run_in_threadpool(lambda: invoke_endpoint(
        ctx, name, invoke_request, principal=getattr(request.state, "principal_id", None), key=key, body=body,
        deployment_header=deployment_header))
    return answered(request, response, started)


def answered(request: Request, response: Response, started: Started) -> Any:
    """A started job's answer: its audit record kept for the audit log, ``repeatability-result``
    when the request was idempotent; returns the job's row (invoke and rerun)."""
    if started.idempotent:
        response.headers["repeatability-result"] = "accepted"
    request.state.audit = started.audit
    return started.row


@router.get("/{name}/jobs", tags=["batch endpoints"], dependencies=[requires(P.ENDPOINTS_READ, endpoint_scope)])
def endpoint_jobs(name: str, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
                  paths: bool = Depends(sees_server_paths),
                  only: str | None = Depends(visible_job_filter)) -> list[dict[str, Any]]:
    rows = reads.endpoint_jobs(ctx, name, only, p.limit, p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]


# ---- deployments -------------------------------------------------------------------------------

@router.get("/{endpoint}/deployments", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def list_deployments(endpoint: str, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [d.to_dict() for d in reads.list_deployments(ctx, endpoint)]


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
    return reads.get_deployment(ctx, endpoint, name).to_dict()


@router.delete("/{endpoint}/deployments/{name}", tags=["batch deployments"], status_code=204, dependencies=[requires(P.DEPLOYMENTS_WRITE, endpoint_scope)])
def delete_deployment(endpoint: str, name: str, force: bool = False, ctx: AppContext = Depends(get_context)) -> None:
    deletes.delete_deployment(ctx, endpoint, name, force)


@router.get("/{endpoint}/deployments/{name}/jobs", tags=["batch deployments"], dependencies=[requires(P.DEPLOYMENTS_READ, endpoint_scope)])
def deployment_jobs(endpoint: str, name: str, p: Page = Depends(page), ctx: AppContext = Depends(get_context),
                    paths: bool = Depends(sees_server_paths),
                    only: str | None = Depends(visible_job_filter)) -> list[dict[str, Any]]:
    rows = reads.deployment_jobs(ctx, endpoint, name, only, p.limit, p.skip)
    return [job_entity(ctx.workspace, r, with_failures=False, server_paths=paths).to_dict() for r in rows]
