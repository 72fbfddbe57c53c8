"""Code and environment assets in ARM's shape, for scoring-script deployments through the client.

* Code: the client asks ``startPendingUpload`` for a place to put a local folder; the answer is a
  SAS URL of the blob endpoint (``blob.sas_query``) for a container ``code-<id>``, which is the
  folder ``LocalUpload/<id>/`` of the default data store. The code version it then PUTs names that URL (``codeUri``) and the folder's content
  hash (``properties.hash_sha256``, ``hash_version`` 202208); the server recomputes that hash over
  what arrived and refuses a mismatch (409, the upload removed); a match makes it a Completed upload
  of the native upload area, held by its uploader (``blob.register_upload``). A lookup by hash
  (``GET …/codes/<name>/versions?hash=``) finds an earlier upload of the same content. Code versions
  are kept in the store's asset table (collection ``codes``) with their data store path.
* Environments: ``PUT …/environments/<name>/versions/<v>`` (``condaFile`` as YAML text, ``image``)
  is the native environment registration (``EnvironmentAssets.create``); the deployment references
  it as ``azureml:<name>:<version>``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import Environment
from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json, short_uri
from batchpoint.server.azure_api.blob import locate, register_upload, sas_query
from batchpoint.server.azure_api.workspace import storage_account
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import AssetRow

router = APIRouter(prefix=arm.BASE, include_in_schema=False)

CODES = "codes"
HASH_VERSION = "202208"


# ---- code ------------------------------------------------------------------------------------------

def blob_host(ctx: AppContext) -> str:
    return f"https://{storage_account(ctx)}.blob.{ctx.settings.azure.storage_suffix}"


def store_path(ctx: AppContext, uri: str) -> str:
    """A blob URL of this server's blob endpoint → ``azureml://datastores/<container>/paths/<path>``."""
    host = blob_host(ctx)
    if isinstance(uri, str) and uri.lower().startswith(host.lower() + "/"):
        container, _, rest = uri[len(host) + 1:].split("?", 1)[0].partition("/")
        store, rel = locate(ctx.workspace.default_datastore_name(), container, rest.strip("/"))
        return f"azureml://datastores/{store}/paths/{rel}"
    return short_uri(uri)


def code_body(request: Request, row: AssetRow) -> dict[str, Any]:
    props = {"codeUri": row.path, "isAnonymous": (row.properties or {}).get("isAnonymous") == "true",
             "isArchived": False, "description": row.description, "tags": row.tags or {},
             "properties": {k: v for k, v in (row.properties or {}).items() if k != "isAnonymous"}}
    return arm.resource(request, "codes/versions", row.version, props, "codes", row.name, "versions", row.version,
                        systemData=arm.system_data(row.created_at))


def content_hash(backend: Any, root: str) -> str:
    """azure-ai-ml's ``get_content_hash`` (hash version 202208) over the files under ``root``."""
    files = sorted(((i.path[len(root) + 1:], i) for i in backend.iter_files(root)), key=lambda f: f[0].lower())
    digest = hashlib.sha256(str(len(files)).encode())
    for rel, info in files:
        digest.update(f"#{rel}#".encode())
        digest.update(str(info.size).encode())
    for _, info in files:
        with backend.open_read(info.path) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@router.get("/codes/{name}/versions", dependencies=[requires(P.ASSETS_READ)])
def list_code_versions(name: str, request: Request, hash: str | None = None,  # noqa: A002 - the client's name
                       ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    rows = ctx.store.list_assets(CODES, None if hash else name)
    if hash:
        rows = [r for r in rows if (r.properties or {}).get("hash_sha256") == hash]
    return arm.page([code_body(request, r) for r in rows])


@router.get("/codes/{name}/versions/{version}", dependencies=[requires(P.ASSETS_READ)])
def get_code_version(name: str, version: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return code_body(request, ctx.store.get_asset(CODES, name, version=version))


@router.post("/codes/{name}/versions/{version}/startpendingupload", dependencies=[requires(P.ASSETS_WRITE)])
def start_pending_upload(name: str, version: str, request: Request,
                         ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    container = f"code-{uuid.uuid4().hex}"  # its own container, as Azure's: LocalUpload/<id>/ (blob.locate)
    blob_uri = f"{blob_host(ctx)}/{container}"
    query = sas_query(ctx.auth.signing_key, container, request.state.principal_id)
    return {"blobReferenceForConsumption": {"blobUri": blob_uri, "storageAccountArmId": None,
                                            "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{query}"}},
            "pendingUploadId": container.rsplit("-", 1)[1], "pendingUploadType": "TemporaryBlobReference"}


@router.put("/codes/{name}/versions/{version}", dependencies=[requires(P.ASSETS_WRITE)])
async def put_code_version(name: str, version: str, request: Request,
                           ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    props = await _json(request)
    uri = props.get("codeUri")
    if not isinstance(uri, str) or not uri:
        raise ValidationError("properties.codeUri is required: where the code folder was uploaded")
    path = store_path(ctx, uri)
    extra = {str(k): str(v) for k, v in (props.get("properties") or {}).items()}
    extra["isAnonymous"] = "true" if props.get("isAnonymous") else "false"
    row = await run_in_threadpool(_create_code, ctx, name, version, path, props.get("description"),
                                  props.get("tags") or {}, extra, request.state.principal_id)
    return code_body(request, row)


_STORE_PATH = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")
_CODE_UPLOAD = re.compile(r"^LocalUpload/(?P<id>[0-9a-f]{32})/(?P<name>[^/]+)$")


def _create_code(ctx: AppContext, name: str, version: str, path: str, description: str | None,
                 tags: dict[str, Any], properties: dict[str, str], principal: str | None = None) -> AssetRow:
    try:
        existing = ctx.store.get_asset(CODES, name, version=version)
    except NotFoundError:
        existing = None
    if existing is not None:
        if existing.path == path:
            return existing
        raise ConflictError(f"code '{name}' version {version} already exists with another path; versions are immutable")
    match = _STORE_PATH.match(path)
    declared = properties.get("hash_sha256")
    if match and declared and properties.get("hash_version") == HASH_VERSION:
        backend = open_backend(ctx.workspace.datastore_spec(match.group("store")))
        root = match.group("path").strip("/")
        got = content_hash(backend, root)
        upload = _CODE_UPLOAD.match(root)
        if got != declared:
            if upload:
                backend.delete(f"LocalUpload/{upload.group('id')}")  # the whole code upload: never kept
            raise ConflictError(f"the code uploaded to '{path}' does not match the hash the client declared "
                                f"({declared[:12]}…, found {got[:12]}…); upload it again")
        if upload:  # now a Completed upload of the native upload area, held by its uploader
            register_upload(ctx, backend, match.group("store"), upload.group("id"), upload.group("name"), False,
                            principal)
    return ctx.store.create_asset(CODES, name=name, version=version, type="code", path=path,
                                  description=description, tags=tags, properties=properties)


def code_path(ctx: AppContext, code_id: str) -> str:
    """A deployment's ``codeId`` (the code version's ARM id) → the folder's data store path."""
    match = re.search(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", code_id or "", re.IGNORECASE)
    if not match:
        return store_path(ctx, code_id)
    return ctx.store.get_asset(CODES, match.group("name"), version=match.group("version")).path


# ---- environments ----------------------------------------------------------------------------------

def env_body(request: Request, env: Environment) -> dict[str, Any]:
    props = {"condaFile": yaml.safe_dump(env.conda_file) if isinstance(env.conda_file, dict) else env.conda_file,
             "image": env.image, "description": env.description, "tags": env.tags or {},
             "isAnonymous": False, "isArchived": False, "osType": "Linux", "autoRebuild": "Disabled"}
    return arm.resource(request, "environments/versions", env.version or "1", props, "environments", env.name or "",
                        "versions", env.version or "1")


@router.put("/environments/{name}/versions/{version}", dependencies=[requires(P.ASSETS_WRITE)])
async def put_environment(name: str, version: str, request: Request,
                          ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    props = await _json(request)
    conda = props.get("condaFile")
    if isinstance(conda, str):
        try:
            conda = yaml.safe_load(conda)
        except yaml.YAMLError as exc:
            raise ValidationError(f"properties.condaFile is not valid YAML: {exc}") from exc
    env = Environment(name=name, version=version, conda_file=conda, image=props.get("image"),
                      description=props.get("description"), tags=props.get("tags") or {})
    assets = EnvironmentAssets(ctx.settings, ctx.store)

    def create_once() -> Environment:
        try:
            return assets.get(name, version)
        except NotFoundError:
            return assets.create(env)

    return env_body(request, await run_in_threadpool(create_once))


@router.get("/environments/{name}/versions/{version}", dependencies=[requires(P.ASSETS_READ)])
def get_environment(name: str, version: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return env_body(request, EnvironmentAssets(ctx.settings, ctx.store).get(name, version))
