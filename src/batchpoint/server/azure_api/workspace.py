"""The workspace and its data stores, in ARM's shape.

A data store the client cannot represent (``local``: a folder of the server; ``s3``) is shown as
identity-based Azure Blob (``credentialsType: None``) in the workspace's storage account, the
container named after the store: the client then reads and writes it through the blob endpoint
with its bearer token. Azure kinds keep their account, container/file system and endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from batchpoint.auth import permissions as P
from batchpoint.entities import Datastore
from batchpoint.server.azure_api import arm
from batchpoint.server.azure_api.cloud import DISCOVERY_PATH, base_url
from batchpoint.server.context import AppContext, get_context
from batchpoint.server.security import datastore_scope, requires
from batchpoint.usecases import reads

router = APIRouter(prefix=arm.BASE, include_in_schema=False)

_KINDS = {"azure_blob": "AzureBlob", "azure_data_lake_gen2": "AzureDataLakeGen2",
          "azure_data_lake_gen1": "AzureDataLakeGen1"}


def storage_account(ctx: AppContext) -> str:
    return ctx.workspace.workspace_entity().storage_account.rsplit("/", 1)[1]


@router.get("", dependencies=[requires(P.WORKSPACE_READ)])
def get_workspace(request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    ws = ctx.workspace.workspace_entity()
    sub, rg = arm.prefix(request).split("/")[2], arm.prefix(request).split("/")[4]
    props = {
        "friendlyName": ws.name, "description": "Batchpoint", "provisioningState": "Succeeded",
        "discoveryUrl": base_url(request) + DISCOVERY_PATH, "workspaceId": "00000000-0000-0000-0000-000000000001",
        "storageAccount": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/"
                          f"{storage_account(ctx)}",
        "mlFlowTrackingUri": "", "publicNetworkAccess": "Enabled", "hbiWorkspace": False,
    }
    return {"id": arm.prefix(request), "name": arm.workspace_name(request), "type": arm.RESOURCE_TYPE,
            "location": ws.location, "kind": "Default", "properties": props, "tags": {},
            "identity": {"type": "SystemAssigned"}, "sku": {"name": "Basic", "tier": "Basic"}}


def datastore_body(request: Request, ctx: AppContext, ds: Datastore) -> dict[str, Any]:
    kind = _KINDS.get(ds.type)
    props: dict[str, Any] = {"description": ds.description, "tags": {}, "isDefault": ds.is_default,
                             "datastoreType": kind or "AzureBlob"}
    identity = ds.credential_kind in (None, "none", "default", "managed_identity", "workload_identity")
    props["credentials"] = {"credentialsType": "None"} if identity or kind is None else \
        {"credentialsType": {"account_key": "AccountKey", "sas": "Sas", "service_principal": "ServicePrincipal"}
         .get(ds.credential_kind or "", "None")}
    suffix = ctx.settings.azure.storage_suffix
    if kind is None:  # local / s3: the blob endpoint of this server serves it
        props.update(accountName=storage_account(ctx), containerName=ds.name, endpoint=suffix, protocol="https")
    elif kind == "AzureDataLakeGen1":
        props.update(storeName=ds.store_name)
    else:
        props.update(accountName=ds.account_name, endpoint=ds.endpoint or "core.windows.net",
                     protocol=ds.protocol or "https")
        props["containerName" if kind == "AzureBlob" else "filesystem"] = ds.container_name or ds.filesystem
    return arm.resource(request, "datastores", ds.name, props, "datastores", ds.name,
                        systemData=arm.system_data(ds.created_at))


@router.get("/datastores", dependencies=[requires(P.DATASTORES_READ)])
def list_datastores(request: Request, isDefault: bool | None = None,  # noqa: N803 - ARM's query name
                    ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    shown = [d for d in reads.list_datastores(ctx) if isDefault is None or d.is_default == isDefault]
    return arm.page([datastore_body(request, ctx, d) for d in shown])


@router.get("/datastores/{name}", dependencies=[requires(P.DATASTORES_READ, datastore_scope)])
def get_datastore(name: str, request: Request, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    return datastore_body(request, ctx, reads.get_datastore(ctx, name))


@router.post("/datastores/{name}/listsecrets", dependencies=[requires(P.DATASTORES_SECRETS_READ, datastore_scope)])
def list_secrets(name: str, ctx: AppContext = Depends(get_context)) -> dict[str, Any]:
    """An identity-based store has no secrets (``secretsType: None``); Azure stores with a key or SAS
    return it as Azure does (Owners only)."""
    credential = dict(ctx.workspace.datastore_spec(name).credential or {})
    kind = credential.get("kind")
    if kind == "account_key":
        return {"secretsType": "AccountKey", "key": credential.get("account_key") or credential.get("key")}
    if kind == "sas":
        return {"secretsType": "Sas", "sasToken": credential.get("sas_token") or credential.get("token")}
    return {"secretsType": "None"}
