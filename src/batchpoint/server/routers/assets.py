"""Data assets and models: versioned, with the label ``latest``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from batchpoint.entities import Data, Model
from batchpoint.auth import permissions as P
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.usecases import reads

router = APIRouter()


def _caller(request: Request, ctx: AppContext) -> tuple[str | None, list[Any]]:
    """The calling principal and its role assignments: registering from the upload area or jobs'
    area is checked as an invoke on it would be (issue 18 §4)."""
    principal = getattr(request.state, "principal_id", None)
    return principal, (ctx.auth.assignments(principal) if principal else [])


@router.get("/data", tags=["data"], dependencies=[requires(P.ASSETS_READ)])
def list_data(name: str | None = None, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [d.to_dict() for d in reads.list_assets(ctx, "data", name)]


@router.post("/data/{name}/versions", tags=["data"], status_code=201, dependencies=[requires(P.ASSETS_WRITE)])
def create_data(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.create_data(Data.from_request(body, name=name), *_caller(request, ctx)).to_dict()


@router.get("/data/{name}", tags=["data"], dependencies=[requires(P.ASSETS_READ)])
def get_data(name: str, version: str | None = None, label: str | None = None,
             ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_asset(ctx, "data", name, version, label or (None if version else "latest")).to_dict()


@router.get("/data/{name}/versions/{version}", tags=["data"], dependencies=[requires(P.ASSETS_READ)])
def get_data_version(name: str, version: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_asset(ctx, "data", name, version).to_dict()


@router.get("/models", tags=["models"], dependencies=[requires(P.MODELS_READ)])
def list_models(name: str | None = None, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [m.to_dict() for m in reads.list_assets(ctx, "models", name)]


@router.post("/models/{name}/versions", tags=["models"], status_code=201, dependencies=[requires(P.MODELS_WRITE)])
def create_model(name: str, body: dict[str, Any], request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.create_model(Model.from_request(body, name=name), *_caller(request, ctx)).to_dict()


@router.get("/models/{name}", tags=["models"], dependencies=[requires(P.MODELS_READ)])
def get_model(name: str, version: str | None = None, label: str | None = None,
              ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_asset(ctx, "models", name, version, label or (None if version else "latest")).to_dict()


@router.get("/models/{name}/versions/{version}", tags=["models"], dependencies=[requires(P.MODELS_READ)])
def get_model_version(name: str, version: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_asset(ctx, "models", name, version).to_dict()
