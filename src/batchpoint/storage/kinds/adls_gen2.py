"""Azure Data Lake Storage Gen2: ``https://<account>.dfs.core.windows.net/...``, ``abfs(s)://``."""

from __future__ import annotations

from typing import Any

from batchpoint.storage.kind import Capabilities, StorageKind, StorageUrl, UrlScheme
from batchpoint.storage.kinds._azure import (
    BLOB_DELEGATION, BLOB_IDENTITY, BLOB_SETTINGS, https_parser, spec_for_url, userinfo_parser,
)

NAME = "azure_data_lake_gen2"


def _spec_for_url(url: StorageUrl, storage: Any) -> Any:
    return spec_for_url(url, storage, "filesystem")


KIND = StorageKind(
    name=NAME,
    title="ADLS Gen2",
    backend="batchpoint.storage.azure_blob:AdlsGen2Backend",
    extra="azure",
    schemes=(UrlScheme("https", https_parser(NAME, "dfs")), UrlScheme("http", https_parser(NAME, "dfs")),
             UrlScheme("abfss", userinfo_parser(NAME, "dfs")), UrlScheme("abfs", userinfo_parser(NAME, "dfs"))),
    spec_for_url=_spec_for_url,
    identity=BLOB_IDENTITY,
    delegation=BLOB_DELEGATION,
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=True, remote_writes=True),
    config_fields=("account_name", "filesystem"),
    settings=BLOB_SETTINGS,
)
