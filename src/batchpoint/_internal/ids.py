"""Names and ARM-like ids of workspace resources."""

from __future__ import annotations

import secrets

from batchpoint.settings import Settings

COLLECTIONS = {
    "datastore": "datastores",
    "data": "data",
    "model": "models",
    "compute": "computes",
    "endpoint": "batchEndpoints",
    "job": "jobs",
}


def new_job_name() -> str:
    return f"batchjob-{secrets.token_hex(4)}-{secrets.token_hex(2)}"


def resource_id(settings: Settings, kind: str, name: str, version: str | None = None) -> str:
    rid = f"{settings.arm_prefix}/{COLLECTIONS[kind]}/{name}"
    return f"{rid}/versions/{version}" if version is not None else rid


def deployment_id(settings: Settings, endpoint: str, name: str) -> str:
    return f"{resource_id(settings, 'endpoint', endpoint)}/deployments/{name}"


def storage_account_id(settings: Settings, account: str) -> str:
    ws = settings.workspace
    return (
        f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
        f"/providers/Microsoft.Storage/storageAccounts/{account}"
    )
