"""The upload area (content-addressed, write-once; see ``batchpoint.workspace.uploads``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.exceptions import ValidationError
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import require_upload

router = APIRouter(prefix="/uploads", tags=["uploads"], dependencies=[Depends(require_upload)])


@router.post("")
async def declare_upload(request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """Declare an upload: ``{"name", "type": "uri_file"|"uri_folder", "files": [{"path", "size", "sha256"}]}``."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValidationError(f"the upload declaration is not valid JSON: {exc}") from exc
    return await run_in_threadpool(ctx.workspace.uploads.declare, body, request.state.principal_id)


@router.get("/{upload_id}")
def get_upload(upload_id: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.uploads.describe(ctx.workspace.uploads.get(upload_id))


@router.put("/{upload_id}/files/{path:path}")
async def upload_file(upload_id: str, path: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """One file of the manifest; its bytes must match the declared size and SHA-256."""
    receiver = await run_in_threadpool(ctx.workspace.uploads.receiver, upload_id, path)
    try:
        async for chunk in request.stream():
            await run_in_threadpool(receiver.write, chunk)
        await run_in_threadpool(receiver.finish)
    except BaseException:
        await run_in_threadpool(receiver.abort)  # nothing half-written or unchecked is left
        raise
    return {"path": receiver.rel, "size": receiver.size}


@router.post("/{upload_id}/commit")
def commit_upload(upload_id: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """Check every file against the manifest again and mark the upload Completed."""
    return ctx.workspace.uploads.commit(upload_id)
