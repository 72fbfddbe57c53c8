"""The upload area: where the CLI and SDK put local files before an invoke or a registration.

Content-addressed and write-once, in the default data store::

    LocalUpload/<id>/<name>                 an uploaded file (type uri_file)
    LocalUpload/<id>/<name>/<relative path> the files of an uploaded folder (type uri_folder)

``<id>`` is derived from the *manifest* the client declares — the type, the name, and each file's
relative path, size and SHA-256 — so an id can only ever hold one content. The flow:

1. ``declare`` (``POST /uploads``): the server computes the id and records the upload as
   ``Pending``; it answers which files are still missing (none once it is ``Completed``).
2. ``receive`` (``PUT /uploads/<id>/files/<path>``): one file of the manifest, streamed through
   SHA-256 and published only if size and hash match what was declared. A file already there is
   never overwritten (409); a file not in the manifest is refused.
3. ``commit`` (``POST /uploads/<id>/commit``): every file is read back and hashed again; a file
   that does not match is deleted and the commit refused. Then the upload is ``Completed``.

Only a ``Completed`` upload is trusted: the SDK skips sending only when the server says so, an
invoke on a ``Pending`` upload is refused, and models and code folders copied out of the area are
checked file by file against the manifest (:meth:`UploadArea.verify_copy`). The generic file route
refuses every write under ``LocalUpload/``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchpoint._internal.clock import utcnow
from batchpoint.auth.permissions import DATA_READ
from batchpoint.auth.scopes import RoleAssignment, authorize, missing_permission_error
from batchpoint.exceptions import (
    ConflictError, InputError, NotFoundError, PayloadTooLargeError, PermissionDeniedError, ValidationError,
)
from batchpoint.storage.base import StorageBackend, normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import UploadRow

if TYPE_CHECKING:
    from batchpoint.workspace.service import WorkspaceService

UPLOAD_AREA = "LocalUpload"
JOBS_AREA = "azureml"  # job outputs (azureml/<job>/score) and parts, in every data store
PENDING, COMPLETED = "Pending", "Completed"
MAX_FILES = 100_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: 32 hex: the native id (from the manifest); 64: an upload the real azure-ai-ml made through the
#: Azure-shaped API's blob endpoint, named by the client's own content hash (server/azure_api/blob.py)
_ID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$")


def upload_id(kind: str, name: str, files: list[dict[str, Any]]) -> str:
    """The id of an upload: SHA-256 over type, name and the sorted (path, size, sha256) list."""
    digest = hashlib.sha256(f"{kind}\0{name}\0".encode())
    for f in sorted(files, key=lambda f: f["path"]):
        digest.update(f"{f['path']}\0{f['size']}\0{f['sha256']}\n".encode())
    return digest.hexdigest()[:32]


def upload_of(datastore_path: str) -> str | None:
    """The upload id a path in the default data store lies in (``LocalUpload/<id>/...``), if any."""
    parts = normalize_relpath(datastore_path).split("/")
    if len(parts) >= 2 and parts[0] == UPLOAD_AREA and _ID.match(parts[1]):
        return parts[1]
    return None


def in_upload_area(path: str) -> bool:
    rel = normalize_relpath(path)
    return rel == UPLOAD_AREA or rel.startswith(f"{UPLOAD_AREA}/")


@dataclass
class Receiver:
    """One file being received: hashes what it writes; :meth:`finish` publishes only on a match."""

    rel: str
    expected: dict[str, Any]
    writer: Any
    size: int = 0

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.expected["size"]:
            raise ValidationError(
                f"upload file '{self.rel}' is larger than the {self.expected['size']} bytes declared for it; "
                "nothing was written. Declare the upload again with the file's real size and SHA-256")
        self.digest.update(chunk)
        self.writer.write(chunk)

    def finish(self) -> None:
        if self.size != self.expected["size"] or self.digest.hexdigest() != self.expected["sha256"]:
            raise ValidationError(
                f"upload file '{self.rel}' does not match its declared content (declared {self.expected['size']} "
                f"bytes, sha256 {self.expected['sha256'][:12]}…; received {self.size} bytes, sha256 "
                f"{self.digest.hexdigest()[:12]}…); nothing was written. The upload area is content-addressed: "
                "send the bytes the manifest describes")
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class UploadArea:
    """Declare, receive and commit uploads into the default data store (see the module docstring)."""

    def __init__(self, ws: WorkspaceService) -> None:
        self.ws = ws

    # -- helpers -----------------------------------------------------------------------------
    def _backend(self, row: UploadRow) -> StorageBackend:
        return open_backend(self.ws.datastore_spec(row.datastore))

    @staticmethod
    def object_path(row: UploadRow, rel: str) -> str:
        base = f"{UPLOAD_AREA}/{row.id}/{row.name}"
        return base if row.type == "uri_file" else f"{base}/{rel}"

    def describe(self, row: UploadRow, missing: list[str] | None = None) -> dict[str, Any]:
        if missing is None:
            missing = [] if row.status == COMPLETED else self._missing(row)
        return {"id": row.id, "datastore": row.datastore, "type": row.type, "name": row.name,
                "path": f"azureml://datastores/{row.datastore}/paths/{UPLOAD_AREA}/{row.id}/{row.name}",
                "status": row.status, "files": len(row.manifest["files"]), "missing": missing}

    def _missing(self, row: UploadRow) -> list[str]:
        backend = self._backend(row)
        return [f["path"] for f in row.manifest["files"] if not backend.is_file(self.object_path(row, f["path"]))]

    def get(self, uid: str) -> UploadRow:
        row = self.ws.store.find_upload(uid) if _ID.match(uid or "") else None
        if row is None:
            raise NotFoundError(f"upload '{uid}' was not found; declare it first with POST /uploads")
        return row

    # -- the three steps ---------------------------------------------------------------------
    def declare(self, body: dict[str, Any], principal: str | None) -> dict[str, Any]:
        kind, name, files = _check_manifest(body, self.ws.settings.server.max_upload_bytes)
        row = UploadRow(id=upload_id(kind, name, files), datastore=self.ws.default_datastore_name(), name=name,
                        type=kind, manifest={"files": files}, status=PENDING, created_by=principal,
                        created_at=utcnow())
        stored = self.ws.store.create_upload(row)
        if principal and stored.created_by != principal and principal not in self.holders(stored):
            self.ws.store.add_upload_holder(stored.id, principal)  # the same content, declared by another
            stored = self.get(stored.id)
        return self.describe(stored)

    @staticmethod
    def holders(row: UploadRow) -> list[str]:
        """The principals who declared this upload: its creator and any who declared the same content."""
        return [p for p in [row.created_by, *(row.manifest.get("holders") or [])] if p]

    def receiver(self, uid: str, path: str) -> Receiver:
        row = self.get(uid)
        if row.status == COMPLETED:
            raise ConflictError(f"upload '{uid}' is complete; the upload area is write-once, so its files cannot "
                                "be sent again or changed")
        rel = normalize_relpath(path)
        expected = next((f for f in row.manifest["files"] if f["path"] == rel), None)
        if expected is None:
            raise ValidationError(f"file '{rel}' is not in the manifest of upload '{uid}'; declare a new upload "
                                  "that lists it")
        backend = self._backend(row)
        target = self.object_path(row, rel)
        if backend.is_file(target):
            raise ConflictError(f"file '{rel}' of upload '{uid}' is already there; the upload area is write-once "
                                "(GET /uploads/<id> lists the files still missing)")
        return Receiver(rel, expected, backend.open_write(target))

    def commit(self, uid: str) -> dict[str, Any]:
        row = self.get(uid)
        if row.status == COMPLETED:
            return self.describe(row)
        backend = self._backend(row)
        missing, wrong = [], []
        for f in row.manifest["files"]:
            target = self.object_path(row, f["path"])
            if not backend.is_file(target):
                missing.append(f["path"])
            elif _hash_of(backend, target) != (f["size"], f["sha256"]):
                backend.delete(target)  # not what the id promises: never keep it
                wrong.append(f["path"])
        if missing or wrong:
            raise ConflictError(
                f"upload '{uid}' cannot be completed: "
                + "; ".join(part for part in (
                    f"{len(missing)} file(s) not sent yet ({_few(missing)})" if missing else "",
                    f"{len(wrong)} file(s) did not match the manifest and were removed ({_few(wrong)})" if wrong else "",
                ) if part) + ". Send them with PUT /uploads/<id>/files/<path>, then commit again",
                details={"missing": missing[:100], "mismatched": wrong[:100]})
        self.ws.store.complete_upload(uid)
        return self.describe(self.get(uid), missing=[])

    # -- what trusts the area ----------------------------------------------------------------
    def check_reader(self, datastore: str | None, path: str, principal: str | None,
                     assignments: Iterable[RoleAssignment], account: str | None = None) -> None:
        """Refuse an invoke input in a store's system areas — the upload area ``LocalUpload/`` (its
        root, or another principal's upload) and the jobs' area ``azureml/`` (outputs, parts) —
        unless ``principal`` holds ``data/read`` on the data store (or its storage account). One's
        own uploads stay readable: that is how a local-folder invoke works. ``principal`` None: the
        server itself (no check)."""
        rel = normalize_relpath(path)
        area = rel.split("/", 1)[0]
        if principal is None or datastore is None or area not in (UPLOAD_AREA, JOBS_AREA):
            return
        own = [a for a in assignments if a.principal_id == principal]
        scopes = [f"datastore:{datastore}"] + ([f"storageaccount:{account}"] if account else [])
        if any(authorize(own, DATA_READ, scope) for scope in scopes):
            return
        uid = upload_of(rel) if area == UPLOAD_AREA and datastore == self.ws.default_datastore_name() else None
        row = self.ws.store.find_upload(uid) if uid else None
        if row is not None and principal in self.holders(row):
            return
        what = ("the jobs' area azureml/ (job outputs and parts)" if area == JOBS_AREA else
                "another principal's upload" if uid else "the upload area LocalUpload/ (every principal's uploads)")
        denied = missing_permission_error(principal, DATA_READ, f"datastore:{datastore}")
        raise PermissionDeniedError(
            f"input '{_short(rel)}' in data store '{datastore}' is {what}: scoring it needs 'data/read' on the data "
            f"store ({denied.message.split('; ', 1)[1]}). Your own uploads need nothing more: invoke with the local "
            "folder and the CLI/SDK upload it", details={**denied.details, "path": _short(rel)})

    def check_input(self, datastore: str | None, path: str) -> None:
        """Refuse an invoke input inside an upload that is not complete (half sent, or never committed)."""
        uid = upload_of(path) if datastore == self.ws.default_datastore_name() else None
        row = self.ws.store.find_upload(uid) if uid else None
        if row is not None and row.status != COMPLETED:
            raise InputError(f"input '{path}' is inside upload '{uid}', which is not complete (its files were not "
                             "all sent and checked); upload the local files again with the batchpoint CLI or SDK")

    def manifest_for_copy(self, datastore: str | None, path: str) -> dict[str, dict[str, Any]] | None:
        """For a model or code folder copied out of the upload area: {object path: manifest entry}
        that every copied file must match; None for paths outside the area (legacy uploads too)."""
        uid = upload_of(path) if datastore == self.ws.default_datastore_name() else None
        row = self.ws.store.find_upload(uid) if uid else None
        if row is None:
            return None
        if row.status != COMPLETED:
            raise InputError(f"'{path}' is inside upload '{uid}', which is not complete; upload the local folder "
                             "again with the batchpoint CLI or SDK")
        return {self.object_path(row, f["path"]): {**f, "upload": row.id} for f in row.manifest["files"]}

    def discard_changed(self, entry: dict[str, Any], object_path: str) -> ConflictError:
        """A file of a completed upload no longer matches (changed in storage behind Batchpoint's
        back): remove it and reopen the upload, so the CLI/SDK send it again next time."""
        row = self.get(entry["upload"])
        self._backend(row).delete(object_path)
        self.ws.store.reopen_upload(row.id)
        return ConflictError(
            f"'{object_path}' was changed in storage after it was uploaded (it no longer matches its SHA-256); "
            "it was removed and nothing was registered. Run the command again: the CLI/SDK upload it anew")


def _hash_of(backend: StorageBackend, path: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with backend.open_read(path) as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def _few(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f", … {len(items) - 5} more" if len(items) > 5 else "")


def _check_manifest(body: Any, max_bytes: int) -> tuple[str, str, list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise ValidationError('an upload is declared as {"name": ..., "type": "uri_file"|"uri_folder", '
                              '"files": [{"path", "size", "sha256"}]}')
    kind, name, files = body.get("type"), body.get("name"), body.get("files")
    if kind not in ("uri_file", "uri_folder"):
        raise ValidationError(f"upload type '{kind}' is not valid; valid: uri_file, uri_folder")
    if not isinstance(name, str) or "/" in name or "\\" in name or not normalize_relpath(name) \
            or normalize_relpath(name) != name or len(name) > 255:
        raise ValidationError(f"upload name {name!r} is not valid: one file or folder name, no '/' (up to 255 characters)")
    if not isinstance(files, list) or not files:
        raise ValidationError("an upload needs at least one file in 'files'")
    if len(files) > MAX_FILES:
        raise ValidationError(f"an upload holds at most {MAX_FILES} files ({len(files)} declared); split the folder")
    checked, seen = [], set()
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ValidationError('each upload file is {"path": "<relative path>", "size": <bytes>, "sha256": "<hex>"}')
        rel = normalize_relpath(entry["path"])
        size, sha = entry.get("size"), str(entry.get("sha256", "")).lower()
        if not rel or rel in seen:
            raise ValidationError(f"upload file path {entry['path']!r} is empty or listed twice")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValidationError(f"upload file '{rel}': size must be a number of bytes (got {size!r})")
        if size > max_bytes:
            raise PayloadTooLargeError(f"upload file '{rel}' ({size} bytes) exceeds the limit of {max_bytes} bytes "
                                       "per file (server.max_upload_bytes, BATCHPOINT_SERVER__MAX_UPLOAD_BYTES)")
        if not _SHA256.match(sha):
            raise ValidationError(f"upload file '{rel}': sha256 must be 64 hex digits")
        seen.add(rel)
        checked.append({"path": rel, "size": size, "sha256": sha})
    if kind == "uri_file" and (len(checked) != 1 or checked[0]["path"] != name):
        raise ValidationError("a uri_file upload holds exactly one file, whose path is the upload's name")
    return kind, name, sorted(checked, key=lambda f: f["path"])
