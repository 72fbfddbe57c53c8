"""Azure Data Lake Storage Gen1: ``adl://<store>.azuredatalakestore.net/<path>``; no public access."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult

from batchpoint.storage.base import StorageSpec
from batchpoint.storage.kind import (
    Capabilities, Delegation, IdentityRules, MalformedUrl, StorageKind, StorageUrl, UrlScheme,
)
from batchpoint.storage.kinds._azure import AZURE_IDENTITIES, AZURE_IDENTITY_HINT

_GEN1_HOST = re.compile(r"(?P<account>[a-z0-9]+)\.(?P<suffix>[a-z0-9-]+(?:\.[a-z0-9-]+)+)")


def parse_url(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl:
    gen1 = _GEN1_HOST.fullmatch(hostport)
    if gen1 is None or parts.username is not None:
        raise MalformedUrl("expected adl://<store>.azuredatalakestore.net/<path>")
    return StorageUrl("azure_data_lake_gen1", gen1["account"], "", path, gen1["suffix"], text, scheme)


def spec_for_url(url: StorageUrl, storage: Any) -> tuple[StorageSpec, str]:
    return StorageSpec("azure_data_lake_gen1", {"store_name": url.account}), url.path


KIND = StorageKind(
    name="azure_data_lake_gen1",
    title="ADLS Gen1",
    backend="batchpoint.storage.adls_gen1:AdlsGen1Backend",
    extra="azure",
    schemes=(UrlScheme("adl", parse_url),),
    spec_for_url=spec_for_url,
    identity=IdentityRules(
        reader="job", compute_identities=AZURE_IDENTITIES, compute_identity_hint=AZURE_IDENTITY_HINT,
        public_access=False, account_fields=("store_name",), location="Data Lake Storage Gen1 account",
        grant=("Assign one (batchpoint compute create -f compute.yml with identity: {type: managed_identity, "
               "client_id: ...}) and give that identity read and execute access (ACLs) on the folder, or register "
               "a data store with a service principal's credentials"),
    ),
    delegation=Delegation(sas=False, token_scope="https://datalake.azure.net/.default"),
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=True),
    config_fields=("store_name",),
)
