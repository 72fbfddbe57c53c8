"""The blob endpoint: ``https://<account>.blob.<azure.storage_suffix>/<container>/<blob>`` for the
data stores the Azure-shaped API shows as identity-based Azure Blob (local and S3 stores; the
container is the store's name). It speaks the part of the Blob REST API the client's uploads and
downloads use: Put Blob, Put Block / Put Block List, Get Blob Properties (HEAD), Set Blob Metadata,
Get Blob (ranged) and List Blobs (prefix, delimiter, metadata). Requests reach it through the
server's CONNECT proxy (``blob_proxy.py``); :class:`BlobHostMiddleware` routes them by host name.

The client's upload area ``LocalUpload/<hash>/…`` keeps the native upload area's guarantees:

* **complete only when the content matches**: the client marks an upload complete by setting
  ``upload_status=completed`` on its first file; the server then recomputes azure-ai-ml's content
  hash (``get_object_hash``: names and bytes, recursively) over what arrived under
  ``LocalUpload/<hash>/`` and accepts the mark only when it equals ``<hash>``. A mismatch deletes
  the upload and answers 409; registering a model or data asset from an upload not confirmed is
  refused (``confirmed``).
* **written once**: no blob of a confirmed upload can be written again (409 BlobAlreadyExists).

Permissions: writes and the existence checks (HEAD) in ``LocalUpload/`` need what a native upload
needs (``datastores/write`` on the default store, or an ``endpoints/invoke`` grant); other writes
``datastores/write`` on the store; reads and lists ``data/read`` on the store, or, inside a job's
output folder ``azureml/<job>/…``, what reading the job's outputs natively needs (``jobs/outputs/read``
on its endpoint, or one's own job).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import time
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
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
from batchpoint.exceptions import BatchpointError, ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from batchpoint.jobs import children
from batchpoint.server.security import require_job_data, require_upload
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint._internal.clock import utcnow
from batchpoint.store.tables import UploadRow
from batchpoint.workspace.uploads import JOBS_AREA, UPLOAD_AREA

router = APIRouter(prefix="/_blob", include_in_schema=False)

BLOB_KINDS = ("local", "s3")  # the stores this endpoint serves (shown as AzureBlob)
HASH_SEED = b"Initialize for october 2021 AML CLI version"  # azure-ai-ml's get_object_hash
_CLIENT_UPLOAD = re.compile(rf"^{UPLOAD_AREA}/(?P<hash>[0-9a-f]{{64}})(?:/|$)")
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

CODE_CONTAINER = re.compile(r"^code-(?P<id>[0-9a-f]{32})$")  # a code upload's container (code_env.start_pending_upload)


def locate(default_store: str, container: str, rel: str) -> tuple[str, str]:
    """(data store, path in it) of a blob: a code upload's container ``code-<id>`` is the folder
    ``LocalUpload/<id>/`` of the default data store; any other container is the store of that name."""
    match = CODE_CONTAINER.match(container)
    if match:
        return default_store, f"{UPLOAD_AREA}/{match.group('id')}/{rel}".rstrip("/")
    return container, rel

def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _spec(request: Request, container: str) -> Any:
    ctx = _ctx(request)
    row = ctx.store.get_datastore(container)
    if row.kind not in BLOB_KINDS:
        raise NotFoundError(f"container '{container}' is not served here: data store '{container}' is {row.kind}, "
                            "which the client reaches at its own storage account")
    return ctx.workspace.datastore_spec(container)


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


_STORE_PATH = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")


def _job_output_read(request: Request, container: str, rel: str) -> bool:
    """A read inside a job's own output folder (``azureml/<job>/…``) is allowed by the native rule for
    a job's outputs (``require_job_data``: ``jobs/outputs/read`` on its endpoint, or one's own job)."""
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] != JOBS_AREA:
        return False
    ctx = _ctx(request)
    try:
        job = children.job_row(ctx.store, parts[1])
    except NotFoundError:
        return False
    for output in (job.outputs or {}).values():
        match = _STORE_PATH.match(str(output.get("path", "")))
        if match and match.group("store") == container \
                and (rel + "/").startswith(match.group("path").strip("/") + "/"):
            require_job_data(SimpleNamespace(app=request.app,  # type: ignore[arg-type]
                                             state=SimpleNamespace(principal_id=request.state.principal_id),
                                             path_params={"name": job.name}))
            return True
    return False


def _meta_dir(request: Request, container: str) -> Path:
    return _ctx(request).settings.home / "blobmeta" / container


def _meta_file(request: Request, container: str, rel: str) -> Path:
    return _meta_dir(request, container) / (hashlib.sha256(rel.encode()).hexdigest() + ".json")


def _metadata(request: Request, container: str, rel: str) -> dict[str, str]:
    try:
        return json.loads(_meta_file(request, container, rel).read_text())["metadata"]
    except (OSError, ValueError, KeyError):
        return {}


def _confirmed_file(request: Request, container: str, digest: str) -> Path:
    return _meta_dir(request, container) / "confirmed" / digest


def confirmed(settings_home: Path, container: str, rel: str) -> bool | None:
    """For a path in the client's upload area: whether its upload was confirmed; None elsewhere."""
    match = _CLIENT_UPLOAD.match(rel)
    if not match:
        return None
    return (settings_home / "blobmeta" / container / "confirmed" / match.group("hash")).exists()


def _etag(rel: str, size: int) -> str:
    return '"0x' + hashlib.sha256(f"{rel}:{size}".encode()).hexdigest()[:16].upper() + '"'


def _xml_error(exc: BatchpointError) -> Response:
    code = _ERROR_CODES.get(exc.status_code, "InternalError")
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(exc.message)}</Message></Error>'
    return Response(body, status_code=exc.status_code, media_type="application/xml", headers={"x-ms-error-code": code})


def _ms_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"x-ms-version": "2021-08-06", "x-ms-request-id": "batchpoint", "Date": formatdate(usegmt=True),
            **(extra or {})}


def _check_writable(request: Request, container: str, rel: str, backend: Any) -> None:
    if not rel:
        raise ValidationError("a blob needs a name inside the container")
    if confirmed(_ctx(request).settings.home, container, rel):
        raise ConflictError(f"blob '{rel}' belongs to a confirmed upload; the upload area is write-once")
    if request.headers.get("if-none-match") == "*" and backend.is_file(rel):
        raise ConflictError(f"blob '{rel}' already exists")


async def _write_stream(request: Request, backend: Any, rel: str) -> int:
    writer = await run_in_threadpool(backend.open_write, rel)
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


def _blocks_dir(request: Request, container: str, rel: str) -> Path:
    return _ctx(request).settings.home / "blobblocks" / container / hashlib.sha256(rel.encode()).hexdigest()


# ---- the upload check ------------------------------------------------------------------------------

def object_hash(backend: Any, root: str, single_file: bool) -> str:
    """azure-ai-ml's ``get_object_hash`` over what is stored under ``root`` (a folder's files, or one file)."""
    digest = hashlib.sha256(HASH_SEED)
    if single_file:
        _feed(backend, root, digest)
        return digest.hexdigest()
    tree: dict[str, Any] = {}
    for info in backend.iter_files(root):
        node = tree
        *folders, leaf = info.path[len(root) + 1:].split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = info.path

    def walk(node: dict[str, Any]) -> None:
        for name in sorted(node, key=str.lower):
            digest.update(name.encode())
            if isinstance(node[name], dict):
                walk(node[name])
            else:
                _feed(backend, node[name], digest)

    walk(tree)
    return digest.hexdigest()


def _feed(backend: Any, path: str, digest: Any) -> None:
    with backend.open_read(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)


def _confirm(request: Request, container: str, rel: str, backend: Any) -> None:
    """``upload_status=completed`` on a blob of ``LocalUpload/<hash>/``: accept only a matching content."""
    parts = rel.split("/")
    digest = parts[1]
    single = len(parts) == 3
    root = "/".join(parts[:3])
    got = object_hash(backend, root, single)
    if got != digest:
        backend.delete(f"{UPLOAD_AREA}/{digest}")
        raise ConflictError(f"upload {UPLOAD_AREA}/{digest} does not hold what its name promises (content hash "
                            f"{got[:12]}…); it was removed. Upload the local folder again")
    marker = _confirmed_file(request, container, digest)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(rel)
    register_upload(_ctx(request), backend, container, digest, parts[2], single, request.state.principal_id)


def register_upload(ctx: Any, backend: Any, container: str, uid: str, name: str, single: bool,
                    principal: str | None) -> None:
    """Record a checked upload in the native upload area (``workspace/uploads.py``): Completed, its
    manifest (each file's size and SHA-256, as read back), ``principal`` its holder — so registering
    from it, invoking on it and copying a model out of it follow the native rules."""
    if container != ctx.workspace.default_datastore_name():
        return
    root = f"{UPLOAD_AREA}/{uid}/{name}"
    infos = [(root, None)] if single else [(i.path, i) for i in backend.iter_files(root)]
    files = []
    for path, _ in infos:
        digest, size = hashlib.sha256(), 0
        with backend.open_read(path) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        files.append({"path": name if single else path[len(root) + 1:], "size": size, "sha256": digest.hexdigest()})
    row = UploadRow(id=uid, datastore=container, name=name, type="uri_file" if single else "uri_folder",
                    manifest={"files": files}, status="Pending", created_by=principal, created_at=utcnow())
    stored = ctx.store.create_upload(row)
    ctx.store.complete_upload(uid)
    if principal and stored.created_by != principal:
        ctx.store.add_upload_holder(uid, principal)


# ---- routes ----------------------------------------------------------------------------------------

@router.put("/{container}/{path:path}")
async def put_blob(container: str, path: str, request: Request, comp: str | None = None,
                   blockid: str | None = None) -> Response:
    try:
        container, rel = locate(_ctx(request).workspace.default_datastore_name(), container, normalize_relpath(path))
        _allow(request, container, rel, write=True)
        backend = open_backend(await run_in_threadpool(_spec, request, container))
        if comp == "metadata":
            return await run_in_threadpool(_set_metadata, request, container, rel, backend)
        await run_in_threadpool(_check_writable, request, container, rel, backend)
        if comp == "block":
            if not blockid:
                raise ValidationError("Put Block needs a blockid")
            folder = _blocks_dir(request, container, rel)
            folder.mkdir(parents=True, exist_ok=True)
            data = await request.body()
            (folder / hashlib.sha256(blockid.encode()).hexdigest()).write_bytes(data)
            return Response(status_code=201, headers=_ms_headers({"x-ms-request-server-encrypted": "true"}))
        if comp == "blocklist":
            return await _commit_blocks(request, container, rel, backend)
        if comp is not None:
            raise ValidationError(f"comp={comp} is not supported on a blob; supported: block, blocklist, metadata")
        size = await _write_stream(request, backend, rel)
        await run_in_threadpool(_store_metadata, request, container, rel)
        return Response(status_code=201, headers=_ms_headers({"ETag": _etag(rel, size),
                                                              "Last-Modified": formatdate(usegmt=True),
                                                              "x-ms-request-server-encrypted": "true"}))
    except BatchpointError as exc:
        return _xml_error(exc)


async def _commit_blocks(request: Request, container: str, rel: str, backend: Any) -> Response:
    try:
        root = ElementTree.fromstring(await request.body())
    except ElementTree.ParseError as exc:
        raise ValidationError(f"the block list is not valid XML: {exc}") from exc
    folder = _blocks_dir(request, container, rel)
    ids = [el.text or "" for el in root]
    files = [folder / hashlib.sha256(i.encode()).hexdigest() for i in ids]
    missing = [i for i, f in zip(ids, files) if not f.is_file()]
    if missing:
        raise ValidationError(f"block list names {len(missing)} block(s) never sent (first: {missing[0]})")

    def assemble() -> int:
        size = 0
        with backend.open_write(rel) as out:
            for f in files:
                data = f.read_bytes()
                size += len(data)
                out.write(data)
        shutil.rmtree(folder, ignore_errors=True)
        return size

    size = await run_in_threadpool(assemble)
    await run_in_threadpool(_store_metadata, request, container, rel)
    return Response(status_code=201, headers=_ms_headers({"ETag": _etag(rel, size),
                                                          "Last-Modified": formatdate(usegmt=True)}))


def _store_metadata(request: Request, container: str, rel: str) -> None:
    meta = {k[len("x-ms-meta-"):]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")}
    target = _meta_file(request, container, rel)
    if meta:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"path": rel, "metadata": meta}))
    else:
        target.unlink(missing_ok=True)


def _set_metadata(request: Request, container: str, rel: str, backend: Any) -> Response:
    if not backend.is_file(rel):
        raise NotFoundError(f"blob '{rel}' does not exist")
    meta = {k[len("x-ms-meta-"):]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")}
    if meta.get("upload_status") == "completed" and _CLIENT_UPLOAD.match(rel):
        _confirm(request, container, rel, backend)
    _store_metadata(request, container, rel)
    return Response(status_code=200, headers=_ms_headers({"ETag": _etag(rel, 0),
                                                          "Last-Modified": formatdate(usegmt=True)}))


def _properties(request: Request, container: str, rel: str, backend: Any) -> dict[str, str]:
    if not rel or not backend.is_file(rel):
        raise NotFoundError(f"blob '{rel}' does not exist in container '{container}'")
    with backend.open_read(rel) as handle:
        size = handle.seek(0, 2)
    headers = {"Content-Length": str(size), "x-ms-blob-type": "BlockBlob", "ETag": _etag(rel, size),
               "Last-Modified": formatdate(usegmt=True), "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes", "x-ms-creation-time": formatdate(usegmt=True)}
    headers.update({f"x-ms-meta-{k}": v for k, v in _metadata(request, container, rel).items()})
    return headers


@router.head("/{container}/{path:path}")
async def blob_properties(container: str, path: str, request: Request) -> Response:
    try:
        container, rel = locate(_ctx(request).workspace.default_datastore_name(), container, normalize_relpath(path))
        _allow(request, container, rel, write=False)
        backend = open_backend(await run_in_threadpool(_spec, request, container))
        headers = await run_in_threadpool(_properties, request, container, rel, backend)
        match = _CLIENT_UPLOAD.match(rel)
        if match and headers.get("x-ms-meta-upload_status") == "completed":
            # the client skips sending content it finds confirmed: like a native declare of the same
            # content, that makes the caller a holder of the upload
            await run_in_threadpool(ctx_holder, request, match.group("hash"))
        return Response(status_code=200, headers=_ms_headers(headers))
    except BatchpointError as exc:
        response = _xml_error(exc)
        return Response(status_code=response.status_code, headers=dict(response.headers))


def ctx_holder(request: Request, uid: str) -> None:
    ctx, principal = _ctx(request), request.state.principal_id
    row = ctx.store.find_upload(uid)
    if row is not None and principal and principal != row.created_by:
        ctx.store.add_upload_holder(uid, principal)


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
            container, base = locate(_ctx(request).workspace.default_datastore_name(), container, "")
            prefix = f"{base}/{prefix}" if base else prefix
            _allow(request, container, normalize_relpath(prefix), write=False)
            backend = open_backend(await run_in_threadpool(_spec, request, container))
            if comp != "list":
                return Response(status_code=200, headers=_ms_headers())
            body = await run_in_threadpool(_list_xml, request, container, backend, prefix, delimiter, include,
                                           base, shown)
            return Response(body, media_type="application/xml", headers=_ms_headers())
        container, rel = locate(_ctx(request).workspace.default_datastore_name(), container, normalize_relpath(path))
        _allow(request, container, rel, write=False)
        backend = open_backend(await run_in_threadpool(_spec, request, container))
        props = await run_in_threadpool(_properties, request, container, rel, backend)
        return _ranged(request, backend, rel, props)
    except BatchpointError as exc:
        return _xml_error(exc)


def _ranged(request: Request, backend: Any, rel: str, props: dict[str, str]) -> Response:
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
    handle = backend.open_read(rel)
    handle.seek(start)

    def chunks():  # noqa: ANN202
        left = length
        with handle:
            while left > 0 and (chunk := handle.read(min(1 << 20, left))):
                left -= len(chunk)
                yield chunk

    headers = {**props, "Content-Length": str(length)}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(chunks(), status_code=status, headers=_ms_headers(headers),
                             media_type="application/octet-stream")


def _list_xml(request: Request, container: str, backend: Any, prefix: str, delimiter: str | None,
              include: str | None, strip: str = "", shown: str | None = None) -> str:
    """``strip``: the folder a code container stands for, cut from the names listed."""
    want_meta = "metadata" in (include or "")
    base = normalize_relpath(prefix.rsplit("/", 1)[0]) if "/" in prefix else ""
    blobs, prefixes = [], set()
    try:
        listed = list(backend.iter_files(base)) if not base or backend.is_dir(base) else []
    except NotFoundError:
        listed = []
    for info in listed:
        if not info.path.startswith(prefix):
            continue
        rest = info.path[len(prefix):]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            continue
        meta = ""
        if want_meta:
            items = _metadata(request, container, info.path)
            meta = "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in items.items()) + "</Metadata>"
        blobs.append(f"<Blob><Name>{escape(info.path[len(strip) + 1:] if strip else info.path)}</Name><Properties><Content-Length>{info.size or 0}"
                     f"</Content-Length><BlobType>BlockBlob</BlobType><Etag>{_etag(info.path, info.size or 0)}</Etag>"
                     f"<Last-Modified>{formatdate(usegmt=True)}</Last-Modified></Properties>{meta}</Blob>")
    blobs += [f"<BlobPrefix><Name>{escape(p[len(strip) + 1:] if strip else p)}</Name></BlobPrefix>"
              for p in sorted(prefixes)]
    shown_prefix = prefix[len(strip) + 1:] if strip else prefix
    listed_xml = "".join(blobs)
    return ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="' + escape(shown or container)
            + f'"><Prefix>{escape(shown_prefix)}</Prefix><Blobs>{listed_xml}</Blobs><NextMarker /></EnumerationResults>')
