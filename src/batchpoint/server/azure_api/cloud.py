"""The documents the real client reads before any workspace call, and the identity endpoint.

* ``GET /metadata/endpoints`` — ARM's cloud metadata (``ARM_CLOUD_METADATA_URL``): the client picks
  the cloud whose ``resourceManager`` is a prefix of that URL, i.e. this server's HTTPS base URL.
* ``GET /azure/discovery`` — a workspace's discovery document: the ``api`` base the client uses for
  its data-plane calls (batch endpoint job lists) is this server again.
* ``GET /azure/identity/token`` — the App Service managed-identity protocol that
  ``DefaultAzureCredential`` speaks when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set. The
  header's value **is** a Batchpoint API key (or token): the answer's ``access_token`` is that same
  key once the server has checked it is valid. No one without a key gets a token; a key gets no
  more than it already had (every later call is authorised as that key's principal). An unknown,
  expired or revoked key is refused with 401, a missing header with 400.

These three paths (and the signed log URLs of ``history.py``) need no ``Authorization`` header
(``install`` adds them to ``server/security.py``'s open paths); each checks what it was sent itself.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from batchpoint.exceptions import AuthenticationError, ValidationError

METADATA_PATH = "/metadata/endpoints"
DISCOVERY_PATH = "/azure/discovery"
TOKEN_PATH = "/azure/identity/token"
OPEN_PATHS = frozenset({METADATA_PATH, DISCOVERY_PATH, TOKEN_PATH, "/azure/logs"})  # logs: signed URLs (history.py)
TOKEN_LIFE_S = 3600

router = APIRouter(include_in_schema=False)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get(METADATA_PATH)
def cloud_metadata(request: Request) -> list[dict[str, Any]]:
    settings = request.app.state.ctx.settings
    base = base_url(request)
    name = settings.azure.cloud_name
    return [{
        "name": name,
        "portal": f"https://portal.{name.lower()}.localhost",
        "resourceManager": base + "/",
        "authentication": {"loginEndpoint": base + "/", "audiences": [base + "/"], "tenant": "common",
                           "identityProvider": "AAD"},
        "media": base + "/", "graphAudience": base + "/", "graph": base + "/",
        "suffixes": {"storage": settings.azure.storage_suffix, "keyVaultDns": "vault.batchpoint.localhost",
                     "acrLoginServer": "azurecr.batchpoint.localhost"},
        "batch": base + "/", "sqlManagement": base + "/", "vmImageAliasDoc": "",
    }]


@router.get(DISCOVERY_PATH)
def discovery(request: Request) -> dict[str, str]:
    base = base_url(request)
    return {"api": base, "catalog": base, "experimentation": base, "gallery": base, "history": base,
            "hyperdrive": base, "labeling": base, "modelmanagement": base, "pipelines": base, "studio": base}


@router.get(TOKEN_PATH)
async def identity_token(request: Request, resource: str | None = None,
                         x_identity_header: str | None = Header(default=None)) -> dict[str, Any]:
    if not x_identity_header:
        raise ValidationError("the managed-identity request has no X-IDENTITY-HEADER: set IDENTITY_HEADER to a "
                              "Batchpoint API key (eval \"$(batchpoint azure-env)\" does)")
    key = x_identity_header.strip()
    try:
        await run_in_threadpool(request.app.state.ctx.auth.authenticate, key)
    except AuthenticationError as exc:
        raise AuthenticationError(f"IDENTITY_HEADER is not a valid Batchpoint API key: {exc.message}") from exc
    expires = int(time.time()) + TOKEN_LIFE_S
    return {"access_token": key, "expires_on": expires, "expires_in": TOKEN_LIFE_S, "token_type": "Bearer",
            "resource": resource or base_url(request) + "/"}
