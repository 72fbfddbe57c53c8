"""Models and data assets in ARM's shape: containers (``latestVersion``/``nextVersion``, which the
client reads to number a new version) and versions. A version is created by the same workspace
service as the native ``POST /models/<name>/versions``; a re-PUT of a version that exists with the
same path and type answers the existing one (the client retries), a different one is a 409.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.auth import permissions as P
from batchpoint.entities import Data, Model
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.server.azure_api import arm
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import requires
from batchpoint.usecases import assets, blobs

router = APIRouter(prefix=arm.BASE, include_in_schema=False)

_LONG_AZUREML = re.compile(r"^azureml://subscriptions/[^/]+/resource[gG]roups/[^/]+/"
                           r"(?:providers/Microsoft\.MachineLearningServices/)?workspaces/[^/]+/", re.IGNORECASE)
_ASSET_ID = re.compile(r"^(?:azureml:)?/?subscriptions/[^/]+/resource[gG]roups/[^/]+/providers/"
                       r"Microsoft\.MachineLearningServices/workspaces/[^/]+/(?P<kind>models|data|environments|codes)/"
                       r"(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?$", re.IGNORECASE)


def short_uri(uri: str) -> str:
    """``azureml://subscriptions/…/workspaces/<ws>/datastores/x/paths/p`` → ``azureml://datastores/x/paths/p``:
    the caller's workspace is this server's, whatever names it used."""
    return _LONG_AZUREML.sub("azureml://", uri) if isinstance(uri, str) else uri


def asset_ref(value: str) -> str:
    """An ARM asset id (``/subscriptions/…/models/heart/versions/1``) → ``azureml:heart:1``; other
    references unchanged."""
    match = _ASSET_ID.match(value or "")
    if not match:
        return value
    name, version = match.group("name"), match.group("version")
    return f"azureml:{name}:{version}" if version else f"azureml:{name}@latest"


_COLLECTION = {"models": ("models", "modelUri", "modelType"), "data": ("data", "dataUri", "dataType")}


def _container(request: Request, kind: str, rows: list[Any]) -> dict[str, Any]:
    latest = max(rows, key=lambda r: r.created_at)
    numeric = [int(r.version) for r in rows if r.version.isdigit()]
    props = {"latestVersion": latest.version, "nextVersion": str(max(numeric, default=0) + 1),
             "description": latest.description, "tags": latest.tags or {}, "isArchived": False}
    if kind == "data":
        props["dataType"] = latest.type
    return arm.resource(request, kind, latest.name, props, kind, latest.name,
                        systemData=arm.system_data(rows[0].created_at))


def version_body(request: Request, kind: str, row: Any) -> dict[str, Any]:
    _, uri_key, type_key = _COLLECTION[kind]
    props: dict[str, Any] = {uri_key: row.path, type_key: row.type, "description": row.description,
                             "tags": row.tags or {}, "properties": row.properties or {}, "isAnonymous": False,
                             "isArchived": False}
    if kind == "models":
        props["flavors"] = {}
        props["stage"] = "Development"
    return arm.resource(request, f"{kind}/versions", row.version, props, kind, row.name, "versions", row.version,
                        systemData=arm.system_data(row.created_at))


def _rows(ctx: AppContext, kind: str, name: str) -> list[Any]:
    rows = assets.versions(ctx, kind, name)
    if not rows:
        what = "model" if kind == "models" else "data asset"
        raise NotFoundError(f"{what} '{name}' was not found")
    return rows


def _read(kind: str) -> Any:
    return requires(P.MODELS_READ if kind == "models" else P.ASSETS_READ)


def _write(kind: str) -> Any:
    return requires(P.MODELS_WRITE if kind == "models" else P.ASSETS_WRITE)


def _register(kind: str) -> None:
    @router.get(f"/{kind}", dependencies=[_read(kind)])
    def list_containers(request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
        by_name: dict[str, list[Any]] = {}
        for row in assets.versions(ctx, kind):
            by_name.setdefault(row.name, []).append(row)
        return arm.page([_container(request, kind, rows) for rows in by_name.values()])

    @router.get(f"/{kind}/{{name}}", dependencies=[_read(kind)])
    def get_container(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
        return _container(request, kind, _rows(ctx, kind, name))

    @router.get(f"/{kind}/{{name}}/versions", dependencies=[_read(kind)])
    def list_versions(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
        rows = sorted(assets.versions(ctx, kind, name), key=lambda r: r.created_at, reverse=True)
        return arm.page([version_body(request, kind, r) for r in rows])

    @router.get(f"/{kind}/{{name}}/versions/{{version}}", dependencies=[_read(kind)])
    def get_version(name: str, version: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
        return version_body(request, kind, assets.version(ctx, kind, name, version))

    @router.put(f"/{kind}/{{name}}/versions/{{version}}", dependencies=[_write(kind)])
    async def put_version(name: str, version: str, request: Request,
                          ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
        entity = _entity_of(kind, name, version, await _json(request))
        caller = await run_in_threadpool(_caller, request, ctx)  # issue 18 §4: another's upload
        row = await run_in_threadpool(_create_once, ctx, kind, entity, caller)
        return version_body(request, kind, row)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


async def _json(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body.get("properties"), dict):
        raise ValidationError("the request body must be an ARM resource: {\"properties\": {...}}")
    return body["properties"]


def _entity_of(kind: str, name: str, version: str, props: dict[str, Any]) -> Model | Data:
    _, uri_key, type_key = _COLLECTION[kind]
    uri = props.get(uri_key)
    if not isinstance(uri, str) or not uri:
        raise ValidationError(f"properties.{uri_key} is required: the storage path of the "
                              f"{'model' if kind == 'models' else 'data'} (azureml://datastores/<name>/paths/<path>)")
    common = {"name": name, "version": version, "path": short_uri(uri), "description": props.get("description"),
              "tags": props.get("tags") or {}, "properties": props.get("properties") or {}}
    if kind == "models":
        model_type = props.get(type_key) or "custom_model"
        if model_type not in ("mlflow_model", "custom_model"):
            raise ValidationError(f"properties.modelType '{model_type}' is not supported; use mlflow_model or "
                                  "custom_model")
        return Model(type=model_type, **common)
    return Data(type=props.get(type_key) or "uri_folder", **common)


_STORE_PATH = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")


def _check_upload_confirmed(ctx: AppContext, entity: Model | Data) -> None:
    """A path in the client's upload area (``LocalUpload/<hash>/``) must be a confirmed upload."""
    match = _STORE_PATH.match(entity.path)
    if match and blobs.confirmed(ctx.settings.home, match.group("store"), match.group("path").strip("/")) is False:
        raise ConflictError(f"'{entity.path}' is an upload that was not completed (its content was not confirmed "
                            "against its hash); upload the local folder again")


def _caller(request: Request, ctx: AppContext) -> tuple[str | None, list[Any]]:
    principal = getattr(request.state, "principal_id", None)
    return principal, (ctx.auth.assignments(principal) if principal else [])


def _create_once(ctx: AppContext, kind: str, entity: Model | Data,
                 caller: tuple[str | None, list[Any]] = (None, [])) -> Any:
    _check_upload_confirmed(ctx, entity)
    return assets.register_once(ctx, kind, entity, *caller)


for _kind in _COLLECTION:
    _register(_kind)
