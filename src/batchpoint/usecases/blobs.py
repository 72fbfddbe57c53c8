"""The blobs of the Azure-shaped API's blob endpoint (``server/azure_api/blob.py`` parses the Blob
REST calls and maps the answers to its XML and headers; the work is here).

A container is a data store the Azure-shaped API shows as identity-based Azure Blob (a local or S3
store; the container is the store's name), or a code upload's container ``code-<id>``, which is the
folder ``LocalUpload/<id>/`` of the default data store (:func:`locate`). :func:`open_container`
answers a :class:`Container`: its blobs written (whole, or in blocks and a block list), their
metadata (kept beside the store, under ``<home>/blobmeta/<container>/``), read (ranged) and listed.

The client's upload area ``LocalUpload/<hash>/…`` keeps the native upload area's guarantees
(``workspace/uploads.py``):

* **complete only when the content matches**: the client marks an upload complete by setting
  ``upload_status=completed`` on its first file; the content hash azure-ai-ml computes
  (``get_object_hash``: names and bytes, recursively) is recomputed over what arrived under
  ``LocalUpload/<hash>/`` and the mark is accepted only when it equals ``<hash>``. A mismatch
  deletes the upload (409); a match records it as a Completed native upload held by its uploader
  (:func:`register_upload`). Registering a model or data asset from an upload not confirmed is
  refused (:func:`confirmed`).
* **written once**: no blob of a confirmed upload can be written again (409).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.jobs import children
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import UploadRow
from batchpoint.usecases.services import Services
from batchpoint.workspace.uploads import JOBS_AREA, UPLOAD_AREA

BLOB_KINDS = ("local", "s3")  # the stores the blob endpoint serves (shown as AzureBlob)
HASH_SEED = b"Initialize for october 2021 AML CLI version"  # azure-ai-ml's get_object_hash
CLIENT_UPLOAD = re.compile(rf"^{UPLOAD_AREA}/(?P<hash>[0-9a-f]{{64}})(?:/|$)")
CODE_CONTAINER = re.compile(r"^code-(?P<id>[0-9a-f]{32})$")  # a code upload's container
_STORE_PATH = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")
CHUNK = 1 << 20


def locate(default_store: str, container: str, rel: str) -> tuple[str, str]:
    """(data store, path in it) of a blob: a code upload's container ``code-<id>`` is the folder
    ``LocalUpload/<id>/`` of the default data store; any other container is the store of that name."""
    match = CODE_CONTAINER.match(container)
    if match:
        return default_store, f"{UPLOAD_AREA}/{match.group('id')}/{rel}".rstrip("/")
    return container, rel


def confirmed(settings_home: Path, container: str, rel: str) -> bool | None:
    """For a path in the client's upload area: whether its upload was confirmed; None elsewhere."""
    match = CLIENT_UPLOAD.match(rel)
    if not match:
        return None
    return (settings_home / "blobmeta" / container / "confirmed" / match.group("hash")).exists()


def output_job(sv: Services, container: str, rel: str) -> str | None:
    """The job whose output folder (``azureml/<job>/…`` of data store ``container``) holds ``rel``,
    else None: reading there follows the native rule for a job's outputs."""
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] != JOBS_AREA:
        return None
    try:
        job = children.job_row(sv.store, parts[1])
    except NotFoundError:
        return None
    for output in (job.outputs or {}).values():
        match = _STORE_PATH.match(str(output.get("path", "")))
        if match and match.group("store") == container \
                and (rel + "/").startswith(match.group("path").strip("/") + "/"):
            return job.name
    return None


def hold_upload(sv: Services, uid: str, principal: str | None) -> None:
    """``principal`` found upload ``uid`` confirmed and skips sending it again: like a native declare
    of the same content, that makes them a holder of the upload."""
    row = sv.store.find_upload(uid)
    if row is not None and principal and principal != row.created_by:
        sv.store.add_upload_holder(uid, principal)


def open_container(sv: Services, container: str) -> Container:
    """The data store ``container`` (after :func:`locate`) with its backend open; a 404 for a store
    this endpoint does not serve."""
    row = sv.store.get_datastore(container)
    if row.kind not in BLOB_KINDS:
        raise NotFoundError(f"container '{container}' is not served here: data store '{container}' is {row.kind}, "
                            "which the client reaches at its own storage account")
    return Container(sv, container, open_backend(sv.workspace.datastore_spec(container)))


@dataclass(frozen=True)
class BlobInfo:
    size: int
    metadata: dict[str, str]


@dataclass(frozen=True)
class Listed:
    path: str
    size: int
    metadata: dict[str, str] | None  # None: not asked for


@dataclass(frozen=True)
class Container:
    sv: Services
    name: str  # the data store
    backend: Any

    # -- metadata, kept beside the store -----------------------------------------------------------
    def _meta_dir(self) -> Path:
        return self.sv.settings.home / "blobmeta" / self.name

    def _meta_file(self, rel: str) -> Path:
        return self._meta_dir() / (hashlib.sha256(rel.encode()).hexdigest() + ".json")

    def metadata(self, rel: str) -> dict[str, str]:
        try:
            return json.loads(self._meta_file(rel).read_text())["metadata"]
        except (OSError, ValueError, KeyError):
            return {}

    def store_metadata(self, rel: str, meta: dict[str, str]) -> None:
        """Blob ``rel``'s metadata is ``meta`` now (none: removed)."""
        target = self._meta_file(rel)
        if meta:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps({"path": rel, "metadata": meta}))
        else:
            target.unlink(missing_ok=True)

    def set_metadata(self, rel: str, meta: dict[str, str], principal: str | None) -> None:
        """Set Blob Metadata; ``upload_status=completed`` on a blob of ``LocalUpload/<hash>/``
        confirms that upload (:meth:`confirm`) first."""
        if not self.backend.is_file(rel):
            raise NotFoundError(f"blob '{rel}' does not exist")
        if meta.get("upload_status") == "completed" and CLIENT_UPLOAD.match(rel):
            self.confirm(rel, principal)
        self.store_metadata(rel, meta)

    # -- writes --------------------------------------------------------------------------------------
    def check_writable(self, rel: str, if_none_match_any: bool = False) -> None:
        """A blob may be written: it has a name, is no blob of a confirmed upload, and (``If-None-Match:
        *``) does not exist yet."""
        if not rel:
            raise ValidationError("a blob needs a name inside the container")
        if confirmed(self.sv.settings.home, self.name, rel):
            raise ConflictError(f"blob '{rel}' belongs to a confirmed upload; the upload area is write-once")
        if if_none_match_any and self.backend.is_file(rel):
            raise ConflictError(f"blob '{rel}' already exists")

    def writer(self, rel: str) -> Any:
        """A writer of blob ``rel`` (``write``, ``close``, ``abort``)."""
        return self.backend.open_write(rel)

    def _blocks_dir(self, rel: str) -> Path:
        return self.sv.settings.home / "blobblocks" / self.name / hashlib.sha256(rel.encode()).hexdigest()

    def put_block(self, rel: str, block_id: str, data: bytes) -> None:
        """Put Block: kept until a block list names it."""
        folder = self._blocks_dir(rel)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / hashlib.sha256(block_id.encode()).hexdigest()).write_bytes(data)

    def commit_blocks(self, rel: str, block_ids: list[str]) -> int:
        """Put Block List: blob ``rel`` is the blocks named, in that order; its size."""
        folder = self._blocks_dir(rel)
        files = [folder / hashlib.sha256(i.encode()).hexdigest() for i in block_ids]
        missing = [i for i, f in zip(block_ids, files) if not f.is_file()]
        if missing:
            raise ValidationError(f"block list names {len(missing)} block(s) never sent (first: {missing[0]})")
        size = 0
        with self.backend.open_write(rel) as out:
            for f in files:
                data = f.read_bytes()
                size += len(data)
                out.write(data)
        shutil.rmtree(folder, ignore_errors=True)
        return size

    # -- the upload check ----------------------------------------------------------------------------
    def confirm(self, rel: str, principal: str | None) -> None:
        """Accept the upload ``LocalUpload/<hash>/…`` of ``rel`` only when its content hash is
        ``<hash>``; else delete it (409)."""
        parts = rel.split("/")
        digest = parts[1]
        single = len(parts) == 3
        root = "/".join(parts[:3])
        got = object_hash(self.backend, root, single)
        if got != digest:
            self.backend.delete(f"{UPLOAD_AREA}/{digest}")
            raise ConflictError(f"upload {UPLOAD_AREA}/{digest} does not hold what its name promises (content hash "
                                f"{got[:12]}…); it was removed. Upload the local folder again")
        marker = self._meta_dir() / "confirmed" / digest
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(rel)
        register_upload(self.sv, self.backend, self.name, digest, parts[2], single, principal)

    # -- reads ---------------------------------------------------------------------------------------
    def properties(self, rel: str) -> BlobInfo:
        """Blob ``rel``'s size and metadata; a 404 when it does not exist."""
        if not rel or not self.backend.is_file(rel):
            raise NotFoundError(f"blob '{rel}' does not exist in container '{self.name}'")
        with self.backend.open_read(rel) as handle:
            size = handle.seek(0, 2)
        return BlobInfo(size, self.metadata(rel))

    def read(self, rel: str, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes of blob ``rel`` from ``start``, in chunks (the blob is opened now)."""
        handle = self.backend.open_read(rel)
        handle.seek(start)

        def chunks() -> Iterator[bytes]:
            left = length
            with handle:
                while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk

        return chunks()

    def listing(self, prefix: str, delimiter: str | None, with_metadata: bool) -> tuple[list[Listed], list[str]]:
        """List Blobs: the blobs whose path starts with ``prefix`` and, with a ``delimiter``, the
        prefixes that stand for what lies deeper (sorted)."""
        base = normalize_prefix_folder(prefix)
        blobs, prefixes = [], set()
        try:
            listed = list(self.backend.iter_files(base)) if not base or self.backend.is_dir(base) else []
        except NotFoundError:
            listed = []
        for info in listed:
            if not info.path.startswith(prefix):
                continue
            rest = info.path[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            blobs.append(Listed(info.path, info.size or 0, self.metadata(info.path) if with_metadata else None))
        return blobs, sorted(prefixes)


def normalize_prefix_folder(prefix: str) -> str:
    """The folder a list prefix lies in (``a/b/c`` → ``a/b``; none: the root)."""
    return normalize_relpath(prefix.rsplit("/", 1)[0]) if "/" in prefix else ""


def object_hash(backend: Any, root: str, single_file: bool) -> str:
    """azure-ai-ml's ``get_object_hash`` over what is stored under ``root`` (a folder's files, or one file)."""
    digest = hashlib.sha256(HASH_SEED)
    if single_file:
        _feed(backend, root, digest)
        return digest.hexdigest()
    tree: dict[str, Any] = {}
    for info in backend.iter_files(root):
        node = tree
        *folders, leaf = info.path[len(root) + 1:].split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = info.path

    def walk(node: dict[str, Any]) -> None:
        for name in sorted(node, key=str.lower):
            digest.update(name.encode())
            if isinstance(node[name], dict):
                walk(node[name])
            else:
                _feed(backend, node[name], digest)

    walk(tree)
    return digest.hexdigest()


def _feed(backend: Any, path: str, digest: Any) -> None:
    with backend.open_read(path) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)


def register_upload(sv: Services, backend: Any, container: str, uid: str, name: str, single: bool,
                    principal: str | None) -> None:
    """Record a checked upload in the native upload area (``workspace/uploads.py``): Completed, its
    manifest (each file's size and SHA-256, as read back), ``principal`` its holder — so registering
    from it, invoking on it and copying a model out of it follow the native rules."""
    if container != sv.workspace.default_datastore_name():
        return
    root = f"{UPLOAD_AREA}/{uid}/{name}"
    infos = [(root, None)] if single else [(i.path, i) for i in backend.iter_files(root)]
    files = []
    for path, _ in infos:
        digest, size = hashlib.sha256(), 0
        with backend.open_read(path) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        files.append({"path": name if single else path[len(root) + 1:], "size": size, "sha256": digest.hexdigest()})
    row = UploadRow(id=uid, datastore=container, name=name, type="uri_file" if single else "uri_folder",
                    manifest={"files": files}, status="Pending", created_by=principal, created_at=utcnow())
    stored = sv.store.create_upload(row)
    sv.store.complete_upload(uid)
    if principal and stored.created_by != principal:
        sv.store.add_upload_holder(uid, principal)
