"""The blob endpoint: ``https://<account>.blob.<azure.storage_suffix>/<container>/<blob>`` for the
data stores the Azure-shaped API shows as identity-based Azure Blob (local and S3 stores; the
container is the store's name). It speaks the part of the Blob REST API the client's uploads and
downloads use: Put Blob, Put Block / Put Block List, Get Blob Properties (HEAD), Set Blob Metadata,
Get Blob (ranged) and List Blobs (prefix, delimiter, metadata). Requests reach it through the
server's CONNECT proxy (``blob_proxy.py``); :class:`BlobHostMiddleware` routes them by host name.

This module parses those calls, checks the caller's permissions and maps the answers to the Blob
API's headers and XML; the blobs themselves (a container's data store, writes, blocks, metadata,
ranged reads, lists) and the client's upload area (``LocalUpload/<hash>/…``: complete only when its
content matches its hash, then write-once and recorded as a native upload) are the use case
``usecases/blobs.py``'s.

Permissions: writes and the existence checks (HEAD) in ``LocalUpload/`` need what a native upload
needs (``datastores/write`` on the default store, or an ``endpoints/invoke`` grant); other writes
``datastores/write`` on the store; reads and lists ``data/read`` on the store, or, inside a job's
output folder ``azureml/<job>/…``, what reading the job's outputs natively needs (``jobs/outputs/read``
on its endpoint, or one's own job).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import check
from batchpoint.auth.tokens import issue_token
from batchpoint.exceptions import BatchpointError, PermissionDeniedError, ValidationError
from batchpoint.server.security import require_upload
from batchpoint.usecases import access, blobs, files
from batchpoint.usecases.blobs import Container
from batchpoint.workspace.uploads import UPLOAD_AREA

router = APIRouter(prefix="/_blob", include_in_schema=False)

_ERROR_CODES = {404: "BlobNotFound", 409: "BlobAlreadyExists", 403: "AuthorizationPermissionMismatch",
                400: "InvalidInput", 413: "RequestBodyTooLarge"}


class BlobHostMiddleware:
    """Pure ASGI: a request whose Host is ``<account>.blob.<suffix>`` goes to ``/_blob/<path>``. A
    request signed with a SAS this server gave (``sas_query``) and no ``Authorization`` of its own
    gets a one-minute token of the principal who asked for the SAS: every permission check still
    applies to that principal."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            suffix = ".blob." + _suffix(scope)
            name = host.rsplit(":", 1)[0].lower()
            if suffix != ".blob." and name.endswith(suffix) and not scope["path"].startswith("/_blob"):
                path = "/_blob" + scope["path"]
                scope = dict(scope, path=path, raw_path=path.encode())
                principal = _sas_principal(scope)
                if principal:
                    ctx = scope["app"].state.ctx
                    token = issue_token(principal, ctx.auth.signing_key, 60)
                    scope["headers"] = [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]
        await self.app(scope, receive, send)


SAS_TTL_S = 3600


def _sas_signature(key: bytes, container: str, principal: str, expiry: int) -> str:
    return hmac.new(key, f"sas\0{container}\0{principal}\0{expiry}".encode(), hashlib.sha256).hexdigest()


def sas_query(key: bytes, container: str, principal: str) -> str:
    """The query of a SAS URL for the blobs of ``container`` (read and write, one hour), in the
    parameters the storage SDK keeps (``se``, ``saoid``: the principal, ``sig``)."""
    expiry = int(time.time()) + SAS_TTL_S
    return urlencode({"sv": "2021-08-06", "sr": "c", "sp": "racwl", "se": expiry, "saoid": principal,
                      "sig": _sas_signature(key, container, principal, expiry)})


def _sas_principal(scope: dict[str, Any]) -> str | None:
    """The signer of a valid, unexpired SAS for this request's container, else None."""
    if any(k == b"authorization" for k, _ in scope["headers"]):
        return None
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
    if not all(query.get(k) for k in ("se", "saoid", "sig")) or not query["se"].isdigit() \
            or int(query["se"]) < time.time():
        return None
    container = scope["path"][len("/_blob/"):].split("/", 1)[0]
    ctx = scope["app"].state.ctx
    expected = _sas_signature(ctx.auth.signing_key, container, query["saoid"], int(query["se"]))
    return query["saoid"] if hmac.compare_digest(expected, query["sig"]) else None


def _suffix(scope: dict[str, Any]) -> str:
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    return ctx.settings.azure.storage_suffix.lower() if ctx is not None else ""


# ---- helpers -------------------------------------------------------------------------------------

def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _locate(request: Request, container: str, path: str) -> tuple[str, str]:
    return blobs.locate(_ctx(request).workspace.default_datastore_name(), container, files.relpath(path))


def _allow(request: Request, container: str, rel: str, write: bool) -> None:
    ctx = _ctx(request)
    principal = request.state.principal_id
    if rel.split("/", 1)[0] == UPLOAD_AREA and (write or request.method == "HEAD") \
            and container == ctx.workspace.default_datastore_name():
        require_upload(request)
        return
    permission = P.DATASTORES_WRITE if write else P.DATA_READ
    try:
        check(ctx.auth.assignments(principal), principal, permission, f"datastore:{container}")
    except PermissionDeniedError:
        if write or not _job_output_read(request, container, rel):
            raise


def _job_output_read(request: Request, container: str, rel: str) -> bool:
    """A read inside a job's own output folder (``azureml/<job>/…``) is allowed by the native rule for
    a job's outputs (``require_job_data``: ``jobs/outputs/read`` on its endpoint, or one's own job)."""
    job = blobs.output_job(_ctx(request), container, rel)
    if job is None:
        return False
    access.check_job_data(_ctx(request), request.state.principal_id, job)
    return True


def _meta_headers(request: Request) -> dict[str, str]:
    return {k[len("x-ms-meta-"):]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")}


def _etag(rel: str, size: int) -> str:
    return '"0x' + hashlib.sha256(f"{rel}:{size}".encode()).hexdigest()[:16].upper() + '"'


def _xml_error(exc: BatchpointError) -> Response:
    code = _ERROR_CODES.get(exc.status_code, "InternalError")
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(exc.message)}</Message></Error>'
    return Response(body, status_code=exc.status_code, media_type="application/xml", headers={"x-ms-error-code": code})


def _ms_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"x-ms-version": "2021-08-06", "x-ms-request-id": "batchpoint", "Date": formatdate(usegmt=True),
            **(extra or {})}


async def _write_stream(request: Request, blob: Container, rel: str) -> int:
    writer = await run_in_threadpool(blob.writer, rel)
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            await run_in_threadpool(writer.write, chunk)
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    await run_in_threadpool(writer.close)
    return size


# ---- routes ----------------------------------------------------------------------------------------

@router.put("/{container}/{path:path}")
async def put_blob(container: str, path: str, request: Request, comp: str | None = None,
                   blockid: str | None = None) -> Response:
    try:
        container, rel = _locate(request, container, path)
        _allow(request, container, rel, write=True)
        blob = await run_in_threadpool(blobs.open_container, _ctx(request), container)
        if comp == "metadata":
            await run_in_threadpool(blob.set_metadata, rel, _meta_headers(request), request.state.principal_id)
            return Response(status_code=200, headers=_ms_headers({"ETag": _etag(rel, 0),
                                                                  "Last-Modified": formatdate(usegmt=True)}))
        await run_in_threadpool(blob.check_writable, rel, request.headers.get("if-none-match") == "*")
        if comp == "block":
            if not blockid:
                raise ValidationError("Put Block needs a blockid")
            blob.put_block(rel, blockid, await request.body())
            return Response(status_code=201, headers=_ms_headers({"x-ms-request-server-encrypted": "true"}))
        if comp == "blocklist":
            return await _commit_blocks(request, blob, rel)
        if comp is not None:
            raise ValidationError(f"comp={comp} is not supported on a blob; supported: block, blocklist, metadata")
        size = await _write_stream(request, blob, rel)
        await run_in_threadpool(blob.store_metadata, rel, _meta_headers(request))
        return Response(status_code=201, headers=_ms_headers({"ETag": _etag(rel, size),
                                                              "Last-Modified": formatdate(usegmt=True),
                                                              "x-ms-request-server-encrypted": "true"}))
    except BatchpointError as exc:
        return _xml_error(exc)


async def _commit_blocks(request: Request, blob: Container, rel: str) -> Response:
    try:
        root = ElementTree.fromstring(await request.body())
    except ElementTree.ParseError as exc:
        raise ValidationError(f"the block list is not valid XML: {exc}") from exc
    size = await run_in_threadpool(blob.commit_blocks, rel, [el.text or "" for el in root])
    await run_in_threadpool(blob.store_metadata, rel, _meta_headers(request))
    return Response(status_code=201, headers=_ms_headers({"ETag": _etag(rel, size),
                                                          "Last-Modified": formatdate(usegmt=True)}))


def _properties(blob: Container, rel: str) -> dict[str, str]:
    info = blob.properties(rel)
    headers = {"Content-Length": str(info.size), "x-ms-blob-type": "BlockBlob", "ETag": _etag(rel, info.size),
               "Last-Modified": formatdate(usegmt=True), "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes", "x-ms-creation-time": formatdate(usegmt=True)}
    headers.update({f"x-ms-meta-{k}": v for k, v in info.metadata.items()})
    return headers


@router.head("/{container}/{path:path}")
async def blob_properties(container: str, path: str, request: Request) -> Response:
    try:
        container, rel = _locate(request, container, path)
        _allow(request, container, rel, write=False)
        blob = await run_in_threadpool(blobs.open_container, _ctx(request), container)
        headers = await run_in_threadpool(_properties, blob, rel)
        match = blobs.CLIENT_UPLOAD.match(rel)
        if match and headers.get("x-ms-meta-upload_status") == "completed":
            # the client skips sending content it finds confirmed: that makes the caller a holder
            await run_in_threadpool(blobs.hold_upload, _ctx(request), match.group("hash"), request.state.principal_id)
        return Response(status_code=200, headers=_ms_headers(headers))
    except BatchpointError as exc:
        response = _xml_error(exc)
        return Response(status_code=response.status_code, headers=dict(response.headers))


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@router.get("/{container}")
async def get_container(container: str, request: Request, restype: str | None = None, comp: str | None = None,
                        prefix: str = "", delimiter: str | None = None, include: str | None = None) -> Response:
    return await get_blob(container, request, "", restype, comp, prefix, delimiter, include)


@router.get("/{container}/{path:path}")
async def get_blob(container: str, request: Request, path: str = "", restype: str | None = None,
                   comp: str | None = None, prefix: str = "", delimiter: str | None = None,
                   include: str | None = None) -> Response:
    try:
        if restype == "container" or comp == "list":
            shown = container
            container, base = blobs.locate(_ctx(request).workspace.default_datastore_name(), container, "")
            prefix = f"{base}/{prefix}" if base else prefix
            _allow(request, container, files.relpath(prefix), write=False)
            blob = await run_in_threadpool(blobs.open_container, _ctx(request), container)
            if comp != "list":
                return Response(status_code=200, headers=_ms_headers())
            body = await run_in_threadpool(_list_xml, blob, prefix, delimiter, include, base, shown)
            return Response(body, media_type="application/xml", headers=_ms_headers())
        container, rel = _locate(request, container, path)
        _allow(request, container, rel, write=False)
        blob = await run_in_threadpool(blobs.open_container, _ctx(request), container)
        props = await run_in_threadpool(_properties, blob, rel)
        return _ranged(request, blob, rel, props)
    except BatchpointError as exc:
        return _xml_error(exc)


def _ranged(request: Request, blob: Container, rel: str, props: dict[str, str]) -> Response:
    size = int(props["Content-Length"])
    wanted = request.headers.get("x-ms-range") or request.headers.get("range")
    start, end, status = 0, size - 1, 200
    if wanted:
        match = _RANGE.match(wanted.strip())
        if not match:
            raise ValidationError(f"range '{wanted}' is not supported; give bytes=<start>-<end>")
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        status = 206
    length = max(0, end - start + 1)
    chunks = blob.read(rel, start, length)
    headers = {**props, "Content-Length": str(length)}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(chunks, status_code=status, headers=_ms_headers(headers),
                             media_type="application/octet-stream")


def _list_xml(blob: Container, prefix: str, delimiter: str | None, include: str | None, strip: str = "",
              shown: str | None = None) -> str:
    """``strip``: the folder a code container stands for, cut from the names listed."""
    listed, prefixes = blob.listing(prefix, delimiter, "metadata" in (include or ""))
    items = []
    for b in listed:
        meta = "" if b.metadata is None else \
            "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in b.metadata.items()) + "</Metadata>"
        items.append(f"<Blob><Name>{escape(b.path[len(strip) + 1:] if strip else b.path)}</Name><Properties><Content-Length>{b.size}"
                     f"</Content-Length><BlobType>BlockBlob</BlobType><Etag>{_etag(b.path, b.size)}</Etag>"
                     f"<Last-Modified>{formatdate(usegmt=True)}</Last-Modified></Properties>{meta}</Blob>")
    items += [f"<BlobPrefix><Name>{escape(p[len(strip) + 1:] if strip else p)}</Name></BlobPrefix>" for p in prefixes]
    shown_prefix = prefix[len(strip) + 1:] if strip else prefix
    listed_xml = "".join(items)
    return ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="' + escape(shown or blob.name)
            + f'"><Prefix>{escape(shown_prefix)}</Prefix><Blobs>{listed_xml}</Blobs><NextMarker /></EnumerationResults>')
