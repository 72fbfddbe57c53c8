"""What a job's workers read with: short-lived, read-only credentials minted by the server, never
the data store's own secret. The scoring script runs inside the worker, so whatever the worker
holds, the script can read; it gets access to the files it scores, for a while, and no more.

| credential of the input | what workers get |
|---|---|
| account key, or a connection string with one (Blob, ADLS Gen2) | a SAS on the container: read + list, expires after ``jobs.worker_credential_ttl_s`` |
| service principal, managed / workload / default identity (Azure) | an access token for storage (about an hour); no client secret, nothing to mint more |
| SAS token | that SAS (already delegated; it keeps its own expiry) |
| anonymous, local folder, https | unchanged (nothing secret) |
| S3 keys or profile | unchanged (not delegated yet: STS session credentials would be the way) |

Which storage kind gets a SAS and which an access token (for which scope) is the kind's own
declaration (``StorageKind.delegation`` in ``storage/kinds/``); this module only mints them.

A source named in ``writable`` (the output data store of a job whose Ray actors write their parts
there themselves, ``engines/ray_engine.py``) gets a SAS to create and write blobs — no read, list
or delete — instead of read + list; the other kinds are handed over as above.

:class:`WorkerCredentials` re-mints when less than a third of a credential's life is left; the
engine hands the new set to each worker with its next mini-batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from batchpoint.exceptions import StorageAuthError
from batchpoint.storage.azure_auth import AUTH_FIXES, parse_connection_string, sync_token_credential
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.registry import find_kind

KEY_KINDS = ("account_key", "connection_string")
AZURE_TOKEN_KINDS = ("service_principal", "managed_identity", "workload_identity", "default_identity",
                     "token_credential")


def _minted(spec: StorageSpec) -> str | None:
    """``sas`` or ``access_token`` when the server mints workers a credential for ``spec``: what the
    storage kind declares (``StorageKind.delegation``, ``storage/kinds/``)."""
    declared = find_kind(spec.kind)
    if declared is None:
        return None
    kind = (spec.credential or {}).get("kind")
    if declared.delegation.sas and kind in KEY_KINDS and _has_key(spec):
        return "sas"
    if declared.delegation.token_scope and kind in AZURE_TOKEN_KINDS:
        return "access_token"
    return None


def delegated_kind(spec: StorageSpec) -> str:
    """The credential kind workers get for ``spec`` (shown on the job, next to the input's own)."""
    return _minted(spec) or str((spec.credential or {}).get("kind") or "none")


def _has_key(spec: StorageSpec) -> bool:
    cred = spec.credential or {}
    if cred.get("kind") == "account_key":
        return True
    return bool(parse_connection_string(str(cred.get("connection_string") or "")).get("AccountKey"))


class WorkerCredentials:
    """The sources of a job as its workers should see them; :meth:`current` is (version, sources)."""

    def __init__(self, sources: dict[str, StorageSpec], ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.time, writable: frozenset[str] = frozenset()) -> None:
        self.sources, self.ttl_s, self.clock = sources, float(ttl_s), clock
        self.writable = writable
        self._lock = threading.Lock()
        self._version = 0
        self._current: dict[str, StorageSpec] = {}
        self._renew_at = 0.0

    def current(self) -> tuple[int, dict[str, StorageSpec]]:
        with self._lock:
            now = self.clock()
            if self._version == 0 or now >= self._renew_at:
                expiries: list[float] = []
                self._current = {key: self._delegate(spec, now, expiries, key in self.writable)
                                 for key, spec in self.sources.items()}
                soonest = min(expiries, default=now + 10 * 365 * 86400)
                self._renew_at = now + (soonest - now) * 2 / 3
                self._version += 1
            return self._version, dict(self._current)

    def _delegate(self, spec: StorageSpec, now: float, expiries: list[float], write: bool = False) -> StorageSpec:
        kind = _minted(spec)
        if kind == "sas":
            expires = now + self.ttl_s
            expiries.append(expires)
            return _container_sas(spec, expires, write)
        if kind == "access_token":
            token = _access_token(spec)
            expiries.append(min(float(token.expires_on), now + self.ttl_s))
            credential = {"kind": "access_token", "token": token.token, "expires_on": int(token.expires_on)}
            return StorageSpec(spec.kind, dict(spec.config), credential)
        return spec


def _container_sas(spec: StorageSpec, expires: float, write: bool = False) -> StorageSpec:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas  # the optional azure extra

    cred, config = spec.credential or {}, dict(spec.config)
    account, key = config.get("account_name"), cred.get("account_key")
    if cred.get("kind") == "connection_string":
        parts = parse_connection_string(str(cred["connection_string"]))
        account, key = account or parts.get("AccountName"), parts["AccountKey"]
        config.setdefault("account_name", account)
        if parts.get("BlobEndpoint"):
            config.setdefault("blob_endpoint_url", parts["BlobEndpoint"])
        else:
            config.setdefault("protocol", parts.get("DefaultEndpointsProtocol", "https"))
            config.setdefault("endpoint", parts.get("EndpointSuffix", "core.windows.net"))
    container = config.get("container_name") or config.get("filesystem")
    sas = generate_container_sas(
        str(account), str(container), account_key=str(key),
        permission=ContainerSasPermissions(create=True, write=True) if write else ContainerSasPermissions(read=True, list=True),
        start=datetime.now(UTC) - timedelta(minutes=5),  # clock skew between server and storage
        expiry=datetime.fromtimestamp(expires, UTC),
    )
    return StorageSpec(spec.kind, config, {"kind": "sas", "sas_token": sas})


def _access_token(spec: StorageSpec) -> Any:
    cred = spec.credential or {}
    what = f"{spec.kind} storage {spec.describe()}"
    credential = sync_token_credential(cred, what)
    try:
        return credential.get_token(str(find_kind(spec.kind).delegation.token_scope))  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - azure-identity raises several types; the message matters
        kind = str(cred.get("kind"))
        raise StorageAuthError(
            f"could not get a token for {what} with credential kind '{kind}': "
            f"{str(exc).splitlines()[0][:300]}; {AUTH_FIXES.get(kind, '')}"
        ) from None
    finally:
        close = getattr(credential, "close", None)
        if close is not None and cred.get("kind") != "token_credential":
            close()
