"""Azure credential dicts -> Azure SDK credential objects, and the account URL to talk to.

Credential dict shapes (``StorageSpec.credential``; ``None`` means ``default_identity``)::

    {"kind": "account_key", "account_key": "..."}
    {"kind": "sas", "sas_token": "sv=...&sig=..."}           # leading '?' allowed
    {"kind": "service_principal", "tenant_id": "...", "client_id": "...",
     "client_secret": "...", "authority_url": "https://login.microsoftonline.com"}  # authority optional
    {"kind": "connection_string", "connection_string": "DefaultEndpointsProtocol=...;..."}
    {"kind": "anonymous"}                                     # public containers
    {"kind": "default_identity", "managed_identity_client_id": "..."}  # client id optional
    {"kind": "managed_identity", "client_id": "..."}          # client id optional (user-assigned)
    {"kind": "workload_identity", "tenant_id": "...", "client_id": "...", "token_file": "/path"}
    {"kind": "access_token", "token": "eyJ...", "expires_on": 1767225600}  # minted by the server
    {"kind": "token_credential", "credential": <object with get_token>}  # in-process only

``managed_identity`` and ``workload_identity`` are the compute identities of
:mod:`batchpoint.identity.rules`; ``access_token`` is what a job's workers get instead of them (see
:mod:`batchpoint.identity.delegation`): a bearer token that expires, and nothing to mint more.

Blob clients are asynchronous (adlfs drives them on fsspec's event loop), so token credentials
are the ``azure.identity.aio`` variants; a synchronous ``get_token`` object is adapted.
ADLS Gen1 (``azure-datalake-store``) uses the synchronous variants: :func:`sync_token_credential`.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from urllib.parse import urlparse

from batchpoint.exceptions import ValidationError
from batchpoint.storage._support import require_secret

AZURE_CREDENTIAL_KINDS = (
    "account_key", "sas", "service_principal", "connection_string", "anonymous",
    "default_identity", "managed_identity", "workload_identity", "access_token", "token_credential",
)
TOKEN_KINDS = ("service_principal", "default_identity", "managed_identity", "workload_identity", "access_token",
               "token_credential")
STORAGE_SCOPE = "https://storage.azure.com/.default"

# What to tell a user when the service rejects each kind of credential.
AUTH_FIXES = {
    "account_key": "check the account key of the data store (it may have been rotated)",
    "sas": "the SAS token has expired, is not valid yet, or lacks read+list permission "
           "(write+delete for outputs): generate a new one",
    "service_principal": "check tenant_id, client_id and client_secret, and that the service "
                         "principal has the 'Storage Blob Data Reader' role (Contributor for outputs)",
    "connection_string": "check the connection string (account name, key or SAS in it)",
    "anonymous": "the container is not public: give the data store a credential",
    "default_identity": "the identity found by DefaultAzureCredential (environment, managed "
                        "identity or 'az login') was refused or unavailable: give it the "
                        "'Storage Blob Data Reader' role or set a credential on the data store",
    "managed_identity": "the compute's managed identity was refused or unavailable: check its client_id "
                        "and give it the 'Storage Blob Data Reader' role on the storage account",
    "workload_identity": "the workload identity was refused: check tenant_id, client_id, the federated "
                         "token file and that the identity has the 'Storage Blob Data Reader' role",
    "access_token": "the access token minted for this job was refused (expired, or the identity lacks "
                    "the 'Storage Blob Data Reader' role)",
    "token_credential": "the token credential was refused: check the identity and its roles",
}


def credential_kind(credential: dict[str, Any] | None) -> str:
    kind = "default_identity" if not credential else str(credential.get("kind", ""))
    if kind not in AZURE_CREDENTIAL_KINDS:
        raise ValidationError(
            f"unknown Azure credential kind '{kind}'; valid kinds: {', '.join(AZURE_CREDENTIAL_KINDS)}"
        )
    return kind


def parse_connection_string(conn: str) -> dict[str, str]:
    """``Key=Value;...`` -> dict (values may contain '=')."""
    parts = (p.split("=", 1) for p in conn.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in parts}


def account_url(config: dict[str, Any], account: str) -> str:
    """The blob service URL: ``blob_endpoint_url`` when set (Azurite, custom domains), else
    ``{protocol}://{account}.blob.{endpoint}``."""
    custom = config.get("blob_endpoint_url")
    if custom:
        parsed = urlparse(str(custom))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValidationError(f"blob_endpoint_url '{custom}' must be an http(s) URL")
        return str(custom).rstrip("/")
    protocol = str(config.get("protocol") or "https").lower()
    if protocol not in ("http", "https"):
        raise ValidationError(f"protocol must be 'https' or 'http', not '{protocol}'")
    endpoint = str(config.get("endpoint") or "core.windows.net").strip(".")
    return f"{protocol}://{account}.blob.{endpoint}"


class _AsyncAdapter:
    """Lets a synchronous ``get_token`` object serve the asynchronous blob clients."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._inner.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _AsyncAdapter:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


def async_credential(kind: str, credential: dict[str, Any] | None, account: str, what: str) -> Any:
    """The credential object to hand to ``azure.storage.blob.aio`` clients (None = anonymous)."""
    cred = credential or {}
    if kind == "anonymous":
        return None
    if kind == "account_key":
        from azure.core.credentials import AzureNamedKeyCredential

        return AzureNamedKeyCredential(account, require_secret(cred, "account_key", what))
    if kind == "sas":
        from azure.core.credentials import AzureSasCredential

        return AzureSasCredential(require_secret(cred, "sas_token", what).lstrip("?"))
    if kind == "service_principal":
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(**_principal_args(cred, what))
    if kind == "default_identity":
        from azure.identity.aio import DefaultAzureCredential

        return DefaultAzureCredential(**_identity_args(cred))
    if kind == "managed_identity":
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(**_managed_args(cred))
    if kind == "workload_identity":
        from azure.identity.aio import WorkloadIdentityCredential

        return WorkloadIdentityCredential(**_workload_args(cred, what))
    if kind == "access_token":
        return _AsyncAdapter(StaticAccessToken.from_credential(cred, what))
    if kind == "token_credential":
        obj = _token_object(cred, what)
        return obj if inspect.iscoroutinefunction(obj.get_token) else _AsyncAdapter(obj)
    raise ValidationError(f"{what}: credential kind '{kind}' cannot be used here")


def sync_token_credential(credential: dict[str, Any] | None, what: str) -> Any:
    """A synchronous azure-identity credential (for libraries built on ``requests``)."""
    kind = credential_kind(credential)
    cred = credential or {}
    if kind == "service_principal":
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(**_principal_args(cred, what))
    if kind == "default_identity":
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(**_identity_args(cred))
    if kind == "managed_identity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(**_managed_args(cred))
    if kind == "workload_identity":
        from azure.identity import WorkloadIdentityCredential

        return WorkloadIdentityCredential(**_workload_args(cred, what))
    if kind == "access_token":
        return StaticAccessToken.from_credential(cred, what)
    if kind == "token_credential":
        obj = _token_object(cred, what)
        if inspect.iscoroutinefunction(obj.get_token):
            raise ValidationError(f"{what}: needs a synchronous token credential, got an async one")
        return obj
    raise ValidationError(
        f"{what} authenticates with Microsoft Entra tokens only: use credential kind "
        f"'service_principal', 'managed_identity', 'workload_identity', 'default_identity' or "
        f"'token_credential', not '{kind}'"
    )


def _principal_args(cred: dict[str, Any], what: str) -> dict[str, Any]:
    args = {f: require_secret(cred, f, what) for f in ("tenant_id", "client_id", "client_secret")}
    if cred.get("authority_url"):
        args["authority"] = str(cred["authority_url"])
    return args


def _identity_args(cred: dict[str, Any]) -> dict[str, Any]:
    client_id = cred.get("managed_identity_client_id")
    return {"managed_identity_client_id": client_id} if client_id else {}


def _managed_args(cred: dict[str, Any]) -> dict[str, Any]:
    client_id = cred.get("client_id") or cred.get("managed_identity_client_id")
    return {"client_id": str(client_id)} if client_id else {}


def _workload_args(cred: dict[str, Any], what: str) -> dict[str, Any]:
    return {"tenant_id": require_secret(cred, "tenant_id", what), "client_id": require_secret(cred, "client_id", what),
            "token_file_path": require_secret(cred, "token_file", what)}


class StaticAccessToken:
    """A bearer token minted elsewhere, served until it expires (it cannot renew itself)."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token, self._expires_on = token, int(expires_on)

    @classmethod
    def from_credential(cls, cred: dict[str, Any], what: str) -> StaticAccessToken:
        return cls(require_secret(cred, "token", what), int(cred.get("expires_on") or 0))

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)

    def __repr__(self) -> str:
        return f"StaticAccessToken(expires_on={self._expires_on})"


def _token_object(cred: dict[str, Any], what: str) -> Any:
    obj = cred.get("credential")
    if obj is None or not callable(getattr(obj, "get_token", None)):
        raise ValidationError(
            f"{what}: credential kind 'token_credential' needs 'credential', an object with "
            "a get_token method (e.g. an azure-identity credential)"
        )
    return obj
