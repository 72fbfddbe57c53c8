"""Health, the workspace, data stores and the files in them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchpoint.entities import Datastore
from batchpoint.exceptions import ConflictError, PayloadTooLargeError, ValidationError
from batchpoint.auth import permissions as P
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import datastore_scope, requires
from batchpoint.usecases import files, reads
from batchpoint.workspace.uploads import UPLOAD_AREA, in_upload_area

router = APIRouter()


@router.get("/health", tags=["workspace"])
def health(request: Request, response: Response) -> dict[str, str]:
    """200 ``{"status": "ok"}``; 503 with ``{"database": "unwritable: <why>"}`` when the metadata
    database cannot take writes (its disk full, read-only), so jobs cannot record their progress."""
    ctx = getattr(request.app.state, "ctx", None)
    problem = reads.write_problem(ctx) if ctx is not None else None
    if problem is None:  # and which server answered (server/instance.py; `batchpoint server status`)
        return {"status": "ok", "database": "ok", **({"server": ctx.dispatcher.owner} if ctx is not None else {})}
    response.status_code = 503
    return {"status": "unhealthy", "database": f"unwritable: {problem}"}


@router.get("/workspace", tags=["workspace"], dependencies=[requires(P.WORKSPACE_READ)])
def show_workspace(ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.workspace_entity().model_dump(mode="json")


@router.get("/datastores", tags=["datastores"], dependencies=[requires(P.DATASTORES_READ)])
def list_datastores(ctx: AppContext = Depends(get_context)) -> list[dict[str, Any]]:
    return [d.to_dict() for d in reads.list_datastores(ctx)]


@router.get("/defaultDatastore", tags=["datastores"], dependencies=[requires(P.DATASTORES_READ)])
def default_datastore(ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.default_datastore(ctx).to_dict()


@router.get("/datastores/{name}", tags=["datastores"], dependencies=[requires(P.DATASTORES_READ, datastore_scope)])
def get_datastore(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return reads.get_datastore(ctx, name).to_dict()


@router.put("/datastores/{name}", tags=["datastores"], dependencies=[requires(P.DATASTORES_WRITE, datastore_scope)])
def put_datastore(name: str, body: dict[str, Any], ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return ctx.workspace.put_datastore(Datastore.from_request(body, name=name)).to_dict()


@router.post("/datastores/{name}/listSecrets", tags=["datastores"],
             dependencies=[requires(P.DATASTORES_SECRETS_READ, datastore_scope)])
def list_secrets(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """The data store's secrets (Owners only), as Azure's listSecrets returns them."""
    spec = ctx.workspace.datastore_spec(name)
    credential = dict(spec.credential or {})
    return {"credential_kind": credential.pop("kind", "none"), "secrets": credential}


@router.head("/datastores/{name}/files/{path:path}", tags=["datastores"], dependencies=[requires(P.DATA_READ, datastore_scope)])
def file_exists(name: str, path: str, ctx: AppContext = Depends(get_context)) -> Response:
    return Response(status_code=200 if files.exists(ctx, name, path) else 404)


@router.put("/datastores/{name}/files/{path:path}", tags=["datastores"], dependencies=[requires(P.DATASTORES_WRITE, datastore_scope)])
async def upload_file(name: str, path: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """Write one file into a data store (Contributors). Never into the upload area: see POST /uploads."""
    rel = files.relpath(path)
    if not rel:
        raise ValidationError("upload needs a file path inside the data store")
    if in_upload_area(rel):
        raise ConflictError(f"'{rel}' is in the upload area ({UPLOAD_AREA}/), which is content-addressed and "
                            "write-once: upload local files with POST /uploads (the CLI and SDK do), never by path")
    opened = await run_in_threadpool(files.opener, ctx, name)
    limit = ctx.settings.server.max_upload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:  # refused before anything is written
        raise PayloadTooLargeError(_too_large(rel, f"{length} bytes", limit))
    size = 0
    writer = await run_in_threadpool(opened, rel)
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(_too_large(rel, f"more than {limit} bytes", limit))
            await run_in_threadpool(writer.write, chunk)
    except BaseException:
        await run_in_threadpool(writer.abort)  # type: ignore[attr-defined]  # nothing half-written is left
        raise
    await run_in_threadpool(writer.close)
    return {"path": f"azureml://datastores/{name}/paths/{rel}", "size": size}


def _too_large(rel: str, size: str, limit: int) -> str:
    return (f"upload of '{rel}' ({size}) exceeds the limit of {limit} bytes per file (server.max_upload_bytes, "
            "BATCHPOINT_SERVER__MAX_UPLOAD_BYTES); nothing was written. Split the data into smaller files.")


@router.get("/datastores/{name}/files/{path:path}", tags=["datastores"], dependencies=[requires(P.DATA_READ, datastore_scope)])
def download_file(name: str, path: str, ctx: AppContext = Depends(get_context)) -> StreamingResponse:
    return StreamingResponse(files.read_file(ctx, name, path), media_type="application/octet-stream")
