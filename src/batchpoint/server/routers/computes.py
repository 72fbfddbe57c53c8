"""Computes: accepted in Azure's shape; on this server they run as local processes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from batchpoint.entities import AmlCompute
from batchpoint.auth import permissions as P
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.usecases import reads

router = APIRouter()


@router.get("/computes", tags=["computes"], dependencies=[requires(P.COMPUTES_READ)])
def list_computes(ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [c.to_dict() for c in reads.list_computes(ctx)]


@router.put("/computes/{name}", tags=["computes"], dependencies=[requires(P.COMPUTES_WRITE)])
def put_compute(name: str, body: dict[str, Any], ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.put_compute(AmlCompute.from_request(body, name=name)).to_dict()


@router.get("/computes/{name}", tags=["computes"], dependencies=[requires(P.COMPUTES_READ)])
def get_compute(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_compute(ctx, name).to_dict()
