"""Azure credential dicts -> Azure SDK credential objects, and the account URL to talk to.

Credential dict shapes (``StorageSpec.credential``; ``None`` means ``default_identity``)::

    {"kind": "account_key", "account_key": "..."}
    {"kind": "sas", "sas_token": "sv=...&sig=..."}           # leading '?' allowed
    {"kind": "service_principal", "tenant_id": "...", "client_id": "...",
     "client_secret": "...", "authority_url": "https://login.microsoftonline.com"}  # authority optional
    {"kind": "connection_string", "connection_string": "DefaultEndpointsProtocol=...;..."}
    {"kind": "anonymous"}                                     # public containers
    {"kind": "default_identity", "managed_identity_client_id": "..."}  # client id optional
    {"kind": "token_credential", "credential": <object with get_token>}  # in-process only

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
    "default_identity", "token_credential",
)
TOKEN_KINDS = ("service_principal", "default_identity", "token_credential")

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
    if kind == "token_credential":
        obj = _token_object(cred, what)
        if inspect.iscoroutinefunction(obj.get_token):
            raise ValidationError(f"{what}: needs a synchronous token credential, got an async one")
        return obj
    raise ValidationError(
        f"{what} authenticates with Microsoft Entra tokens only: use credential kind "
        f"'service_principal', 'default_identity' or 'token_credential', not '{kind}'"
    )


def _principal_args(cred: dict[str, Any], what: str) -> dict[str, Any]:
    args = {f: require_secret(cred, f, what) for f in ("tenant_id", "client_id", "client_secret")}
    if cred.get("authority_url"):
        args["authority"] = str(cred["authority_url"])
    return args


def _identity_args(cred: dict[str, Any]) -> dict[str, Any]:
    client_id = cred.get("managed_identity_client_id")
    return {"managed_identity_client_id": client_id} if client_id else {}


def _token_object(cred: dict[str, Any], what: str) -> Any:
    obj = cred.get("credential")
    if obj is None or not callable(getattr(obj, "get_token", None)):
        raise ValidationError(
            f"{what}: credential kind 'token_credential' needs 'credential', an object with "
            "a get_token method (e.g. an azure-identity credential)"
        )
    return obj
