"""The Azure-shaped API: the real azure-ai-ml client runs unchanged against this server.

Routes under ``/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/
workspaces/<ws>/...`` (any letter case, any ``api-version``, ARM's ``{"error": {"code", "message"}}``,
lists as ``{value, nextLink}``) parse ARM bodies, call the same services as the native routers
under the same permissions, and map the answers back. See docs/azure-client.md.

``install(app)`` mounts it: the path middleware (``arm.py``), the cloud documents and identity
endpoint (``cloud.py``), one router per resource group, and the blob endpoint (``blob.py``, reached
through the CONNECT proxy of ``blob_proxy.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from batchpoint.exceptions import NotFoundError
from batchpoint.server import security
from batchpoint.server.azure_api import arm, assets, blob, cloud, code_env, computes, endpoints, history, jobs, workspace

OPEN_PATHS = cloud.OPEN_PATHS

_unknown = APIRouter(prefix=arm.BASE, include_in_schema=False)


@_unknown.api_route("/{rest:path}", methods=["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"])
def not_supported(rest: str, request: Request) -> Any:
    raise NotFoundError(f"{request.method} {request.state.arm_path} is not supported by Batchpoint's "
                        "Azure-shaped API (docs/azure-client.md lists what is)")


def install(app: Any) -> None:
    security.OPEN_PATHS.update(cloud.OPEN_PATHS)  # they need no key: cloud.py says why
    app.add_middleware(arm.ArmPathMiddleware)
    app.add_middleware(blob.BlobHostMiddleware)  # <account>.blob.<suffix> hosts: the blob endpoint
    for module in (cloud, workspace, assets, code_env, computes, endpoints, jobs, history, blob):
        app.include_router(module.router)
    app.include_router(history.logs_router)
    app.include_router(_unknown)
