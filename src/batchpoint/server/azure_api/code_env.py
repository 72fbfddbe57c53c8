"""Code and environment assets in ARM's shape, for scoring-script deployments through the client.

* Code: the client asks ``startPendingUpload`` for a place to put a local folder; the answer is a
  SAS URL of the blob endpoint (``blob.sas_query``) for a container ``code-<id>``, which is the
  folder ``LocalUpload/<id>/`` of the default data store. The code version it then PUTs names that
  URL (``codeUri``) and the folder's content hash (``properties.hash_sha256``, ``hash_version``
  202208); registering it (``usecases/codes.py`` ``create_code``) recomputes that hash over what
  arrived and refuses a mismatch (409, the upload removed); a match makes it a Completed upload of
  the native upload area, held by its uploader. A lookup by hash (``GET …/codes/<name>/versions?hash=``)
  finds an earlier upload of the same content.
* Environments: ``PUT …/environments/<name>/versions/<v>`` (``condaFile`` as YAML text, ``image``)
  is the native environment registration (``usecases/codes.py`` ``register_environment_once``);
  the deployment references it as ``azureml:<name>:<version>``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import Environment
from batchpoint.exceptions import ValidationError
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.assets import _json, short_uri
from batchpoint.server.azure_api.blob import sas_query
from batchpoint.server.azure_api.workspace import storage_account
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.usecases import blobs, codes

router = APIRouter(prefix=arm.BASE, include_in_schema=False)


# ---- code ------------------------------------------------------------------------------------------

def blob_host(ctx: AppContext) -> str:
    return f"https://{storage_account(ctx)}.blob.{ctx.settings.azure.storage_suffix}"


def store_path(ctx: AppContext, uri: str) -> str:
    """A blob URL of this server's blob endpoint → ``azureml://datastores/<container>/paths/<path>``."""
    host = blob_host(ctx)
    if isinstance(uri, str) and uri.lower().startswith(host.lower() + "/"):
        container, _, rest = uri[len(host) + 1:].split("?", 1)[0].partition("/")
        store, rel = blobs.locate(ctx.workspace.default_datastore_name(), container, rest.strip("/"))
        return f"azureml://datastores/{store}/paths/{rel}"
    return short_uri(uri)


def code_body(request: Request, row: Any) -> dict[str, Any]:
    """A code version (``usecases/codes.py``) in ARM's shape."""
    props = {"codeUri": row.path, "isAnonymous": (row.properties or {}).get("isAnonymous") == "true",
             "isArchived": False, "description": row.description, "tags": row.tags or {},
             "properties": {k: v for k, v in (row.properties or {}).items() if k != "isAnonymous"}}
    return arm.resource(request, "codes/versions", row.version, props, "codes", row.name, "versions", row.version,
                        systemData=arm.system_data(row.created_at))


@router.get("/codes/{name}/versions", dependencies=[requires(P.ASSETS_READ)])
def list_code_versions(name: str, request: Request, hash: str | None = None,  # noqa: A002 - the client's name
                       ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    rows = codes.versions(ctx, name, hash)
    return arm.page([code_body(request, r) for r in rows])


@router.get("/codes/{name}/versions/{version}", dependencies=[requires(P.ASSETS_READ)])
def get_code_version(name: str, version: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return code_body(request, codes.version(ctx, name, version))


@router.post("/codes/{name}/versions/{version}/startpendingupload", dependencies=[requires(P.ASSETS_WRITE)])
def start_pending_upload(name: str, version: str, request: Request,
                         ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    container = f"code-{uuid.uuid4().hex}"  # its own container, as Azure's: LocalUpload/<id>/ (usecases/blobs.py locate)
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
    row = await run_in_threadpool(codes.create_code, ctx, name, version, path, props.get("description"),
                                  props.get("tags") or {}, extra, request.state.principal_id)
    return code_body(request, row)


def code_path(ctx: AppContext, code_id: str) -> str:
    """A deployment's ``codeId`` (the code version's ARM id) → the folder's data store path."""
    match = re.search(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", code_id or "", re.IGNORECASE)
    if not match:
        return store_path(ctx, code_id)
    return codes.code_path(ctx, match.group("name"), match.group("version"))


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
    return env_body(request, await run_in_threadpool(codes.register_environment_once, ctx, env))


@router.get("/environments/{name}/versions/{version}", dependencies=[requires(P.ASSETS_READ)])
def get_environment(name: str, version: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return env_body(request, codes.environment(ctx, name, version))
