"""Code versions (the code folders of scoring-script deployments made through the Azure-shaped API)
and environment versions by name and version, as ``server/azure_api/code_env.py`` shows them.

Code versions are kept in the store's asset table (collection ``codes``) with their data store path.
Registering one whose folder the client uploaded with a declared content hash (``hash_sha256``,
``hash_version`` 202208) recomputes that hash over what arrived and refuses a mismatch (409, a code
upload removed); a match in the upload area makes it a Completed native upload held by its uploader
(``usecases/blobs.py`` ``register_upload``). Environments are the native environment assets
(``environments/assets.py``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from batchpoint.entities import Environment
from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.exceptions import ConflictError, NotFoundError
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import AssetRow
from batchpoint.usecases.blobs import register_upload
from batchpoint.usecases.services import Services

CODES = "codes"
HASH_VERSION = "202208"
_STORE_PATH = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")
_CODE_UPLOAD = re.compile(r"^LocalUpload/(?P<id>[0-9a-f]{32})/(?P<name>[^/]+)$")


def versions(sv: Services, name: str, content_hash_sha256: str | None = None) -> list[AssetRow]:
    """The versions of code ``name``; with a hash, the versions of any name with that content hash."""
    rows = sv.store.list_assets(CODES, None if content_hash_sha256 else name)
    if content_hash_sha256:
        rows = [r for r in rows if (r.properties or {}).get("hash_sha256") == content_hash_sha256]
    return rows


def version(sv: Services, name: str, number: str) -> AssetRow:
    return sv.store.get_asset(CODES, name, version=number)


def content_hash(backend: Any, root: str) -> str:
    """azure-ai-ml's ``get_content_hash`` (hash version 202208) over the files under ``root``."""
    files = sorted(((i.path[len(root) + 1:], i) for i in backend.iter_files(root)), key=lambda f: f[0].lower())
    digest = hashlib.sha256(str(len(files)).encode())
    for rel, info in files:
        digest.update(f"#{rel}#".encode())
        digest.update(str(info.size).encode())
    for _, info in files:
        with backend.open_read(info.path) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def create_code(sv: Services, name: str, number: str, path: str, description: str | None,
                tags: dict[str, Any], properties: dict[str, str], principal: str | None = None) -> AssetRow:
    """Register code ``name`` version ``number`` at data store path ``path`` (``azureml://…``); the
    same version again with the same path answers it, with another path is a 409."""
    try:
        existing = sv.store.get_asset(CODES, name, version=number)
    except NotFoundError:
        existing = None
    if existing is not None:
        if existing.path == path:
            return existing
        raise ConflictError(f"code '{name}' version {number} already exists with another path; versions are immutable")
    match = _STORE_PATH.match(path)
    declared = properties.get("hash_sha256")
    if match and declared and properties.get("hash_version") == HASH_VERSION:
        backend = open_backend(sv.workspace.datastore_spec(match.group("store")))
        root = match.group("path").strip("/")
        got = content_hash(backend, root)
        upload = _CODE_UPLOAD.match(root)
        if got != declared:
            if upload:
                backend.delete(f"LocalUpload/{upload.group('id')}")  # the whole code upload: never kept
            raise ConflictError(f"the code uploaded to '{path}' does not match the hash the client declared "
                                f"({declared[:12]}…, found {got[:12]}…); upload it again")
        if upload:  # now a Completed upload of the native upload area, held by its uploader
            register_upload(sv, backend, match.group("store"), upload.group("id"), upload.group("name"), False,
                            principal)
    return sv.store.create_asset(CODES, name=name, version=number, type="code", path=path,
                                 description=description, tags=tags, properties=properties)


def code_path(sv: Services, name: str, number: str) -> str:
    """The data store path of code ``name`` version ``number``."""
    return version(sv, name, number).path


def environment(sv: Services, name: str, number: str) -> Environment:
    return EnvironmentAssets(sv.settings, sv.store).get(name, number)


def register_environment_once(sv: Services, env: Environment) -> Environment:
    """Register ``env`` (the native environment registration), or answer the version that exists."""
    assets = EnvironmentAssets(sv.settings, sv.store)
    try:
        return assets.get(env.name or "", env.version or "")
    except NotFoundError:
        return assets.create(env)
