"""What Azure Blob Storage and ADLS Gen2 share: host names, URL parsing, identity and delegation."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, unquote, urlparse

from batchpoint._internal.netguard import check_host_allowed
from batchpoint.storage.azure_auth import account_url
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.kind import Delegation, IdentityRules, MalformedUrl, StorageUrl

# <account>.<blob|dfs>.core.<cloud suffix> — without a port; anything else is a plain URL.
AZURE_HOST = re.compile(r"(?P<account>[a-z0-9]+)\.(?P<service>blob|dfs)\.(?P<suffix>core(?:\.[a-z0-9-]+)+)")
AZURE_IDENTITIES = ("managed_identity", "service_principal", "workload_identity")
AZURE_IDENTITY_HINT = ("give the compute an Azure identity (managed_identity, service_principal or "
                       "workload_identity)")
STORAGE_SCOPE = "https://storage.azure.com/.default"

BLOB_IDENTITY = IdentityRules(
    reader="job", compute_identities=AZURE_IDENTITIES, compute_identity_hint=AZURE_IDENTITY_HINT,
    public_access=True, account_fields=("account_name",), location="storage account", container_word="container",
    grant=("Assign one (batchpoint compute create -f compute.yml with identity: {type: managed_identity, "
           "client_id: ...}) and grant that identity Storage Blob Data Reader on the storage account, or register "
           "a data store with credentials"),
)
BLOB_DELEGATION = Delegation(sas=True, token_scope=STORAGE_SCOPE)
BLOB_SETTINGS = ("blob_endpoints", "endpoint_suffix", "allow_private_hosts")


def https_parser(kind: str, service: str) -> Any:
    """``https://<account>.<service>.core.<suffix>/<container>/<path>``; other hosts are not ``kind``'s."""

    def parse(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl | None:
        azure = AZURE_HOST.fullmatch(hostport)
        if azure is None or azure["service"] != service:
            return None
        container, _, rest = path.partition("/")
        if not container:
            raise MalformedUrl("expected https://<account>.blob.core.windows.net/<container>/<path>")
        return StorageUrl(kind, azure["account"], container, rest, azure["suffix"], text, scheme)

    return parse


def userinfo_parser(kind: str, service: str) -> Any:
    """``wasbs://<container>@<account>.blob.<suffix>/...`` and ``abfss://<fs>@<account>.dfs.<suffix>/...``."""

    def parse(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl:
        azure = AZURE_HOST.fullmatch(hostport)
        container = unquote(parts.username or "")
        if azure is None or azure["service"] != service or not container or "/" in container:
            raise MalformedUrl(f"expected {scheme}://<container>@<account>.{service}.core.windows.net/<path>")
        return StorageUrl(kind, azure["account"], container, path, azure["suffix"], text, scheme)

    return parse


def spec_for_url(url: StorageUrl, storage: Any, container_field: str) -> tuple[StorageSpec, str]:
    config: dict[str, Any] = {"account_name": url.account, container_field: url.container}
    if url.account in storage.blob_endpoints:  # the server's own configuration: trusted
        config["blob_endpoint_url"] = storage.blob_endpoints[url.account]
    else:
        # the URL's DNS suffix names the host to contact (https://<account>.blob.<suffix>/...)
        config["endpoint"] = url.endpoint_suffix or storage.endpoint_suffix
        host = urlparse(account_url(config, url.account)).hostname or ""
        check_host_allowed(host, allow_private=host in storage.allow_private_hosts)
    return StorageSpec(url.kind, config), url.path
