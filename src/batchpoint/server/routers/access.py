"""Principals, their API keys, role assignments and the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from batchpoint._internal.clock import as_utc
from batchpoint.auth import permissions as P
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.paging import MAX_PAGE
from batchpoint.server.security import requires
from batchpoint.usecases import access

router = APIRouter(tags=["access"])


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
    kind: str = "user"
    display_name: str | None = None


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in_days: int = Field(default=90, ge=1, le=3650, strict=True)  # true is not 1 day (issue 18 §5)


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal_id: str
    role: str
    scope: str = "workspace"


def _key(row: Any) -> dict[str, Any]:
    return {"key_id": row.key_id, "principal_id": row.principal_id, "created_at": as_utc(row.created_at),
            "expires_at": as_utc(row.expires_at), "revoked_at": as_utc(row.revoked_at)}


def _assignment(row: Any) -> dict[str, Any]:
    return {"id": row.id, "principal_id": row.principal_id, "role": row.role, "scope": row.scope,
            "created_at": as_utc(row.created_at)}


@router.get("/principals", dependencies=[requires(P.ROLES_READ)])
def list_principals(ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [{"id": r.id, "kind": r.kind, "display_name": r.display_name} for r in access.list_principals(ctx)]


@router.post("/principals", status_code=201, dependencies=[requires(P.ROLES_WRITE)])
def create_principal(body: PrincipalIn, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    row = ctx.auth.create_principal(body.id, body.kind, body.display_name)
    return {"id": row.id, "kind": row.kind, "display_name": row.display_name}


@router.post("/principals/{principal_id}/keys", status_code=201, dependencies=[requires(P.ROLES_WRITE)])
def create_key(principal_id: str, body: KeyIn | None = None, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    plaintext, row = ctx.auth.create_key(principal_id, timedelta(days=(body or KeyIn()).expires_in_days))
    return {**_key(row), "key": plaintext, "note": "the key is shown once; store it safely"}


@router.get("/principals/{principal_id}/keys", dependencies=[requires(P.ROLES_READ)])
def list_keys(principal_id: str, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [_key(r) for r in access.list_keys(ctx, principal_id)]


@router.delete("/principals/{principal_id}/keys/{key_id}", status_code=204, dependencies=[requires(P.ROLES_WRITE)])
def revoke_key(principal_id: str, key_id: str, ctx: AppContext = Depends(get_context)) -> None:
    access.revoke_key(ctx, principal_id, key_id)


@router.get("/roleAssignments", dependencies=[requires(P.ROLES_READ)])
def list_assignments(principal_id: str | None = None, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [_assignment(r) for r in access.list_assignments(ctx, principal_id)]


@router.post("/roleAssignments", status_code=201, dependencies=[requires(P.ROLES_WRITE)])
def create_assignment(body: AssignmentIn, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return _assignment(access.add_assignment(ctx, body.principal_id, body.role, body.scope))


@router.delete("/roleAssignments/{assignment_id}", status_code=204, dependencies=[requires(P.ROLES_WRITE)])
def delete_assignment(assignment_id: int = PathParam(ge=1, le=2**62, description="the assignment's id"),
                      ctx: AppContext = Depends(get_context)) -> None:
    access.delete_assignment(ctx, assignment_id)


@router.get("/auditLog", dependencies=[requires(P.AUDIT_READ)])
def audit_log(limit: int = Query(100, ge=1, le=MAX_PAGE, description="entries, newest first (1-1000)"),
              principal_id: str | None = None, ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [{"id": r.id, "at": as_utc(r.at), "principal_id": r.principal_id, "action": r.action,
             "resource": r.resource, "status": r.status, "details": r.details}
            for r in access.audit_log(ctx, limit, principal_id)]
