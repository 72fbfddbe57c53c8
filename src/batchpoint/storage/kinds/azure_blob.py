"""Azure Blob Storage: ``https://<account>.blob.core.windows.net/...``, ``wasb(s)://``."""

from __future__ import annotations

from typing import Any

from batchpoint.storage.kind import Capabilities, StorageKind, StorageUrl, UrlScheme
from batchpoint.storage.kinds._azure import (
    BLOB_DELEGATION, BLOB_IDENTITY, BLOB_SETTINGS, https_parser, spec_for_url, userinfo_parser,
)

NAME = "azure_blob"


def _spec_for_url(url: StorageUrl, storage: Any) -> Any:
    return spec_for_url(url, storage, "container_name")


KIND = StorageKind(
    name=NAME,
    title="Azure Blob Storage",
    backend="batchpoint.storage.azure_blob:AzureBlobBackend",
    extra="azure",
    schemes=(UrlScheme("https", https_parser(NAME, "blob")), UrlScheme("http", https_parser(NAME, "blob")),
             UrlScheme("wasbs", userinfo_parser(NAME, "blob")), UrlScheme("wasb", userinfo_parser(NAME, "blob"))),
    spec_for_url=_spec_for_url,
    identity=BLOB_IDENTITY,
    delegation=BLOB_DELEGATION,
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=False, remote_writes=True),
    config_fields=("account_name", "container_name"),
    settings=BLOB_SETTINGS,
)
