"""Environments: registered ones (azure-ai-ml's ``Environment``: versioned, label ``latest``) and
the environments built for deployments (``/environment-builds``). See docs/environments.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from batchpoint.auth import permissions as P
from batchpoint.entities import Environment
from batchpoint.environments.assets import EnvironmentAssets, list_builds, prune_builds
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires, sees_server_paths
from batchpoint.usecases import reads

router = APIRouter()


def _shown_build(build: dict[str, Any] | None, request: Request) -> dict[str, Any] | None:
    """What was built, as the caller may see it: where it is on the server's disk (``path``, the
    interpreter) only for Owners of the workspace, as everywhere else (docs/security.md)."""
    if build is None or sees_server_paths(request):
        return build
    return {k: v for k, v in build.items() if k not in ("path", "interpreter")
            and not (k == "python" and str(v).startswith("/"))}


def _shown(env: Environment, request: Request) -> dict[str, Any]:
    env.build = _shown_build(env.build, request)
    return env.to_dict()


def _assets(ctx: AppContext) -> EnvironmentAssets:
    return reads.environments(ctx)


@router.get("/environments", tags=["environments"], dependencies=[requires(P.ASSETS_READ)])
def list_environments(name: str | None = None, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [e.to_dict() for e in _assets(ctx).list(name)]


@router.post("/environments/{name}/versions", tags=["environments"], status_code=201,
             dependencies=[requires(P.ASSETS_WRITE)])
def create_environment(name: str, body: dict[str, Any], ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _assets(ctx).create(Environment.from_request(body, name=name)).to_dict()


@router.get("/environments/{name}", tags=["environments"], dependencies=[requires(P.ASSETS_READ)])
def get_environment(name: str, request: Request, version: str | None = None, label: str | None = None,
                    ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(_assets(ctx).get(name, version=version, label=label, with_build=True), request)


@router.get("/environments/{name}/versions/{version}", tags=["environments"], dependencies=[requires(P.ASSETS_READ)])
def get_environment_version(name: str, version: str, request: Request,
                            ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _shown(_assets(ctx).get(name, version=version, with_build=True), request)


@router.delete("/environments/{name}/versions/{version}", tags=["environments"], status_code=204,
               dependencies=[requires(P.ASSETS_WRITE)])
def delete_environment(name: str, version: str, ctx: AppContext = Depends(get_context)) -> None:
    _assets(ctx).delete(name, version)


@router.get("/environment-builds", tags=["environments"], dependencies=[requires(P.ASSETS_READ)])
def list_environment_builds(request: Request, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [_shown_build(b, request) for b in list_builds(ctx.settings)]


@router.post("/environment-builds/prune", tags=["environments"], dependencies=[requires(P.ASSETS_WRITE)])
def prune_environment_builds(request: Request, older_than_days: float | None = Query(default=None, ge=0, le=100_000),
                             ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return {"removed": [_shown_build(b, request) for b in prune_builds(ctx.settings, older_than_days)]}
