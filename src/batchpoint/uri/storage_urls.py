"""A storage-account URL (parsed by :mod:`batchpoint.uri.parse`) → the backend spec that reads it.

The server's configuration says where each kind of storage really is (``BATCHPOINT_STORAGE__*``):
``blob_endpoints`` maps an account name to its blob service URL (sovereign clouds, private
endpoints, Azurite), ``s3_endpoint_url`` points S3 at a compatible server. Hosts in loopback,
link-local or private ranges are refused (SSRF) unless listed in ``allow_private_hosts`` or reached
through a configured endpoint. The credential is left empty: :mod:`batchpoint.identity.rules`
decides it (identity of the job + compute identity).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from batchpoint._internal.netguard import check_host_allowed
from batchpoint.exceptions import InputError
from batchpoint.storage.azure_auth import account_url
from batchpoint.storage.base import StorageSpec, normalize_relpath
from batchpoint.uri.parse import StorageUrl


def _configured_blob_account(url: StorageUrl, settings: Any) -> tuple[str, str] | None:
    """A path-style URL under a configured blob endpoint: (account, endpoint URL)."""
    for account, endpoint in settings.storage.blob_endpoints.items():
        base = endpoint.rstrip("/") + "/"
        if url.original.startswith(base):
            return account, endpoint
    return None


def spec_for_storage_url(url: StorageUrl, settings: Any) -> tuple[StorageSpec, str]:
    storage = settings.storage
    if url.kind == "https":
        configured = _configured_blob_account(url, settings)
        if configured:
            account, endpoint = configured
            rest = url.original[len(endpoint.rstrip("/")) + 1:].split("?", 1)[0]
            container, _, path = rest.partition("/")
            config = {"account_name": account, "container_name": container, "blob_endpoint_url": endpoint}
            return StorageSpec("azure_blob", config), normalize_relpath(path)
        host = urlparse(url.original).hostname or ""
        check_host_allowed(host, allow_private=host in storage.allow_private_hosts)
        parts = urlparse(url.original)
        return StorageSpec("https", {"base_url": f"{parts.scheme}://{parts.netloc}"}), url.path
    if url.kind in ("azure_blob", "azure_data_lake_gen2"):
        config: dict[str, Any] = {"account_name": url.account}
        config["container_name" if url.kind == "azure_blob" else "filesystem"] = url.container
        if url.account in storage.blob_endpoints:  # the server's own configuration: trusted
            config["blob_endpoint_url"] = storage.blob_endpoints[url.account]
        else:
            # the URL's DNS suffix names the host to contact (https://<account>.blob.<suffix>/...)
            config["endpoint"] = url.endpoint_suffix or storage.endpoint_suffix
            host = urlparse(account_url(config, url.account)).hostname or ""
            check_host_allowed(host, allow_private=host in storage.allow_private_hosts)
        return StorageSpec(url.kind, config), url.path
    if url.kind == "azure_data_lake_gen1":
        return StorageSpec("azure_data_lake_gen1", {"store_name": url.account}), url.path
    if url.kind == "s3":
        config = {"bucket": url.container}
        if storage.s3_endpoint_url:
            config["endpoint_url"] = storage.s3_endpoint_url
        return StorageSpec("s3", config), url.path
    raise InputError(f"storage URL '{url.original}' of kind {url.kind} is not supported")
