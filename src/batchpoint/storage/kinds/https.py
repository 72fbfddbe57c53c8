"""Plain ``http(s)://`` files: one file per URL, read anonymously, never written.

A path-style URL under a blob endpoint the server is configured with
(``BATCHPOINT_STORAGE__BLOB_ENDPOINTS``) is that account's blob storage instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlparse

from batchpoint._internal.netguard import check_host_allowed
from batchpoint.storage.base import StorageSpec, normalize_relpath
from batchpoint.storage.kind import Capabilities, IdentityRules, StorageKind, StorageUrl, UrlScheme


def parse_url(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl:
    return StorageUrl("https", hostport, "", path, None, text, scheme)


def _configured_blob_account(url: StorageUrl, storage: Any) -> tuple[str, str] | None:
    """A path-style URL under a configured blob endpoint: (account, endpoint URL)."""
    for account, endpoint in storage.blob_endpoints.items():
        base = endpoint.rstrip("/") + "/"
        if url.original.startswith(base):
            return account, endpoint
    return None


def spec_for_url(url: StorageUrl, storage: Any) -> tuple[StorageSpec, str]:
    configured = _configured_blob_account(url, storage)
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


KIND = StorageKind(
    name="https",
    title="a plain HTTPS URL",
    backend="batchpoint.storage.http:HttpBackend",
    extra=None,
    schemes=(UrlScheme("https", parse_url, catch_all=True), UrlScheme("http", parse_url, catch_all=True)),
    spec_for_url=spec_for_url,
    # nothing to authenticate: read anonymously (the SSRF guard has checked its host)
    identity=IdentityRules(reader="anonymous", location="plain HTTPS"),
    capabilities=Capabilities(lists_folders=False, writable=False),
    settings=("blob_endpoints", "allow_private_hosts"),
    datastore=False,  # read by URL only: no data store of this kind
)
