"""A folder on the server's disk (the default data store ``workspaceblobstore`` is one)."""

from __future__ import annotations

from batchpoint.storage.kind import Capabilities, IdentityRules, StorageKind

KIND = StorageKind(
    name="local",
    title="a local folder",
    backend="batchpoint.storage.local:LocalBackend",
    extra=None,
    # the server's own folder: the server reads it, like a credential in store
    identity=IdentityRules(reader="server"),
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=True, local_paths=True),
    config_fields=("path",),
    empty_folder_hint=" (links pointing outside the data store are never followed)",
)
