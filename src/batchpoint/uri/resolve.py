"""Parsed input → a storage location to read, the credential to read it with, and its type.

Resolution happens on the server, before a job is created, so every refused input (unknown data
store / asset / version, a path that does not exist, an empty folder, a type that disagrees with
the path, MLTable, V1 datasets, storage the credential cannot read) is an error of the invoke call
itself and no job is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from batchpoint.exceptions import (
    InputError,
    NotFoundError,
    StorageError,
    UnsupportedInputError,
)
from batchpoint.identity.rules import IdentityContext, apply_identity
from batchpoint.settings import Settings
from batchpoint.storage.base import StorageBackend, StorageSpec, normalize_relpath, probe_spec
from batchpoint.storage.registry import open_backend, storage_kind
from batchpoint.uri.parse import MLTABLE_MESSAGE, AssetRef, DatastorePath, LocalPath, StorageUrl, WorkspaceRef, parse_input_uri

INPUT_TYPES = ("uri_folder", "uri_file")


@dataclass
class ResolvedInput:
    """Where an input's files are and how to read them. ``spec`` carries the credential."""

    uri: str
    type: str
    spec: StorageSpec
    path: str
    datastore: str | None = None
    asset: str | None = None  # "<name>:<version>" of the data asset the input named
    credential_source: str = "datastore"  # datastore | identity | anonymous
    url: str | None = None  # the storage URL that located the files, when no data store did

    def public(self) -> dict[str, Any]:
        """What a job record shows: never the secret, only the credential kind."""
        out = {"type": self.type, "path": self.uri, "credential_kind": self.spec.credential_kind,
               "credential_source": self.credential_source, "location": self.spec.describe()}
        if self.datastore:
            out["datastore"] = self.datastore
        if self.asset:
            out["asset"] = self.asset
        return out

    def pin(self) -> dict[str, Any]:
        """What the job reads, fixed at invoke (:meth:`InputResolver.from_pin` rebuilds it): the asset's
        name and version (never a label), the data store or storage URL, the physical location, the
        path in it, the type, and the credential's kind and source — never a secret."""
        asset = None
        if self.asset:
            name, _, version = self.asset.rpartition(":")
            asset = {"name": name, "version": version}
        return {"type": self.type, "asset": asset, "datastore": self.datastore, "url": None if self.datastore else self.url,
                "location": self.spec.describe(), "path": self.path,
                "credential": {"kind": self.spec.credential_kind, "source": self.credential_source}}


class DatastoreLookup(Protocol):
    def datastore_spec(self, name: str) -> StorageSpec: ...
    def default_datastore_name(self) -> str: ...
    def get_asset(self, collection: str, name: str, version: str | None = None, label: str | None = None) -> Any: ...
    def storage_url_spec(self, url: StorageUrl) -> tuple[StorageSpec, str, str | None, str]: ...


class InputResolver:
    def __init__(self, settings: Settings, lookup: DatastoreLookup) -> None:
        self.settings = settings
        self.lookup = lookup

    def resolve(self, text: str, input_type: str | None = None, identity: IdentityContext | None = None) -> ResolvedInput:
        """``identity`` is the job's (invoking principal + compute); None outside jobs (server identity)."""
        input_type = _check_type(input_type)
        parsed = parse_input_uri(text)
        resolved = self._locate(text, parsed, input_type)
        _refuse_https_folder(resolved, input_type)
        if resolved.credential_source == "identity":
            _apply_identity(resolved, identity)
        return self._verify(resolved, input_type)

    def check_for_registration(self, text: str, input_type: str | None) -> ResolvedInput:
        """A data asset's path, as registration checks it (Azure's way): data the server reads with a
        data store's credential (or its own folder) is read once now; data read with an identity is
        only located — a job checks reading it with *its* identity — never with the server's own."""
        input_type = _check_type(input_type)
        resolved = self._locate(text, parse_input_uri(text), input_type)
        _refuse_https_folder(resolved, input_type)
        reader = storage_kind(resolved.spec.kind).identity.reader
        if resolved.credential_source == "identity" and reader == "job":
            resolved.type = input_type or resolved.type or "uri_folder"
            return resolved
        if reader == "anonymous":
            _apply_identity(resolved, None)
        return self._verify(resolved, input_type)

    def from_pin(self, pin: dict[str, Any], identity: IdentityContext | None, uri: str) -> ResolvedInput:
        """The input a job's invoke resolved (:meth:`ResolvedInput.pin`), never resolved again from its
        text: a label such as ``@latest`` cannot move to a newer version under the job. The credential
        is today's: the data store's current one, or the job's identity applied again as
        :meth:`resolve` does. A data store re-pointed at other storage since the invoke fails the job."""
        datastore, location = pin.get("datastore"), pin["location"]
        if datastore:
            spec = self.lookup.datastore_spec(datastore)
            source = _stored_source(spec)
        else:
            url = parse_input_uri(pin.get("url") or "")
            if not isinstance(url, StorageUrl):
                raise InputError(f"the pinned input '{uri}' names no data store and no storage URL; invoke it again")
            spec, _, _, source = self.lookup.storage_url_spec(url)
        if spec.describe() != location:
            where = f"data store '{datastore}'" if datastore else f"storage URL '{pin['url']}'"
            raise InputError(
                f"input '{uri}' was found at invoke in {location}, but {where} now points at {spec.describe()}; "
                "the job reads only what its invoke checked: invoke it again to score the new location")
        asset = pin.get("asset")
        resolved = ResolvedInput(uri, pin["type"], spec, pin["path"], datastore=datastore, url=pin.get("url"),
                                 asset=f"{asset['name']}:{asset['version']}" if asset else None, credential_source=source)
        if source == "identity":
            _apply_identity(resolved, identity)
        return resolved

    def _locate(self, text: str, parsed: Any, input_type: str | None, depth: int = 0) -> ResolvedInput:
        if isinstance(parsed, DatastorePath):
            self._check_workspace(parsed.workspace, text)
            _check_path_length(parsed.path)
            spec = self.lookup.datastore_spec(parsed.datastore)
            source = _stored_source(spec)
            return ResolvedInput(text, input_type or "", spec, normalize_relpath(parsed.path), datastore=parsed.datastore,
                                 credential_source=source)
        if isinstance(parsed, AssetRef):
            return self._locate_asset(text, parsed, input_type, depth)
        if isinstance(parsed, StorageUrl):
            spec, path, datastore, source = self.lookup.storage_url_spec(parsed)
            return ResolvedInput(text, input_type or "", spec, path, datastore=datastore, credential_source=source,
                                 url=text)
        if isinstance(parsed, LocalPath):
            raise InputError(
                f"'{text}' is a local path; the server cannot read the caller's disk. Invoke through the "
                "batchpoint CLI or SDK, which upload local files to the default data store first, or give a "
                "data store path such as azureml://datastores/workspaceblobstore/paths/<path>"
            )
        raise InputError(f"input '{text}' cannot be used")  # pragma: no cover - parse returns the union

    def _locate_asset(self, text: str, ref: AssetRef, input_type: str | None, depth: int) -> ResolvedInput:
        self._check_workspace(ref.workspace, text)
        row = self.lookup.get_asset("data", ref.name, version=ref.version, label=ref.label)
        if row.type == "mltable":
            raise UnsupportedInputError(f"data asset '{row.name}:{row.version}' is an MLTable. {MLTABLE_MESSAGE}")
        if input_type and input_type != row.type:
            raise InputError(
                f"input type '{input_type}' disagrees with data asset '{row.name}:{row.version}', which is a "
                f"{row.type}; {type_hint(row.type)}, or leave the type out"
            )
        if depth > 2:
            raise InputError(f"data asset '{row.name}' points at another asset too many times")
        inner = self._locate(row.path, parse_input_uri(row.path), row.type, depth + 1)
        inner.uri, inner.asset, inner.type = text, f"{row.name}:{row.version}", row.type
        return inner

    def _check_workspace(self, ws: WorkspaceRef | None, text: str) -> None:
        if ws is None:
            return
        mine = self.settings.workspace
        pairs = [("subscription", ws.subscription_id, mine.subscription_id),
                 ("resource group", ws.resource_group, mine.resource_group),
                 ("workspace", ws.workspace, mine.name)]
        for what, given, expected in pairs:
            if given is not None and given.lower() != expected.lower():
                raise NotFoundError(
                    f"'{text}' names {what} '{given}', but this server serves {what} '{expected}'; "
                    "use the id printed by 'batchpoint data show' / 'batchpoint datastore show'"
                )

    def _verify(self, r: ResolvedInput, input_type: str | None) -> ResolvedInput:
        backend = open_backend(probe_spec(r.spec))  # one quick attempt: a dead host is reported in seconds
        _check_access(backend, r)
        if r.datastore and not r.path:
            _refuse_store_root(backend, r)
        is_file = bool(r.path) and backend.is_file(r.path)
        is_dir = not is_file and backend.is_dir(r.path)
        where = _where(r)
        if not is_file and not is_dir:
            raise InputError(f"{where} does not exist; check the path (paths are case-sensitive and relative to "
                             "the root of the data store or container)")
        actual = "uri_file" if is_file else "uri_folder"
        wanted = input_type or r.type or actual
        if wanted != actual:
            what = "a file" if is_file else "a folder"
            raise InputError(
                f"input type '{wanted}' disagrees with {where}, which is {what}; {type_hint(actual)}"
            )
        if is_dir and next(iter(backend.iter_files(r.path)), None) is None:
            hint = storage_kind(r.spec.kind).empty_folder_hint
            raise InputError(f"{where} is an empty folder: there are no files to score{hint}")
        r.type = actual
        return r


def type_hint(kind: str) -> str:
    """How to ask for input type ``kind`` in each interface (the server does not know which one was used)."""
    rest = "UriFolder" if kind == "uri_folder" else "UriFile"
    return f"use type {kind} (CLI --input-type {kind}, SDK Input(type='{kind}'), REST \"JobInputType\": \"{rest}\")"


def _refuse_https_folder(r: ResolvedInput, input_type: str | None) -> None:
    if input_type == "uri_folder" and not storage_kind(r.spec.kind).capabilities.lists_folders:
        raise InputError(
            f"'{r.uri}' is a plain HTTPS URL, which names one file: there is no folder listing over plain HTTP, "
            "so it cannot be a uri_folder. Score it as one file (CLI --input-type uri_file, SDK "
            "Input(type='uri_file'), REST JobInputType UriFile), or give the folder as a storage-account URL "
            "(https://<account>.blob.core.windows.net/<container>/<folder>) or a data store path")


def _refuse_store_root(backend: StorageBackend, r: ResolvedInput) -> None:
    """The root of a data store that holds Batchpoint's own areas (uploads, job outputs) is never
    an input: it would score models, uploads and old predictions too."""
    areas = [area for area in ("LocalUpload", "azureml") if backend.is_dir(area)]
    if areas:
        raise InputError(
            f"input '{r.uri}' is the root of data store '{r.datastore}', which also holds Batchpoint's "
            f"{' and '.join(a + '/' for a in areas)} (uploads, models' and jobs' files): give the folder of your "
            f"data, e.g. azureml://datastores/{r.datastore}/paths/<folder>")


def _stored_source(spec: StorageSpec) -> str:
    """``datastore`` when a data store's own credential (or, for the server's own folder, the server)
    reads it; ``identity`` when the job's identity must."""
    return "datastore" if spec.credential or storage_kind(spec.kind).identity.reader == "server" else "identity"


def _apply_identity(resolved: ResolvedInput, identity: IdentityContext | None) -> None:
    """Read an identity-based input with the job's identity (``None``: the server's own), as its storage
    kind declares (``IdentityRules.reader``): the server's own folder needs none; a plain HTTPS URL has no
    identity to use: it is read anonymously (the SSRF guard has checked its host)."""
    rules = storage_kind(resolved.spec.kind).identity
    if rules.reader == "server":
        return
    if rules.reader == "anonymous":
        resolved.spec = StorageSpec(resolved.spec.kind, resolved.spec.config, {"kind": "anonymous"})
        resolved.credential_source = f"anonymous ({rules.location})"
        return
    config = resolved.spec.config
    account = next((config[f] for f in rules.account_fields if config.get(f)), None)
    resolved.spec, resolved.credential_source = apply_identity(
        resolved.spec, datastore=resolved.datastore, account=account, ctx=identity,
        probe=lambda spec, path_too: open_backend(probe_spec(spec)).check_access(resolved.path if path_too else ""))


#: Azure's blob naming rules: a name of at most 1,024 characters; each folder or file name is also
#: held to 255 bytes, what local disks (and so local data stores) allow
MAX_PATH_CHARS, MAX_NAME_BYTES = 1024, 255


def _check_path_length(path: str) -> None:
    rel = normalize_relpath(path)
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in rel.split("/")), default=0)
    if len(rel) > MAX_PATH_CHARS or longest > MAX_NAME_BYTES:
        raise InputError(
            f"data store path '{rel[:100]}…' ({len(rel)} characters) is too long: a path is at most {MAX_PATH_CHARS} "
            f"characters and each folder or file name in it at most {MAX_NAME_BYTES} bytes (Azure's blob naming rules)")


def _check_access(backend: StorageBackend, r: ResolvedInput) -> None:
    try:
        backend.check_access()
    except StorageError:
        raise
    except Exception as exc:  # translate anything a backend let through
        raise StorageError(f"cannot read {_where(r)}: {exc.__class__.__name__}: {exc}") from exc


def _where(r: ResolvedInput) -> str:
    if r.datastore:
        return f"path '{r.path or '/'}' in data store '{r.datastore}'" + (f" (from '{r.uri}')" if r.asset else "")
    return f"'{r.uri}'"


def _check_type(input_type: str | None) -> str | None:
    if input_type is None or input_type == "":
        return None
    value = input_type.strip().lower().replace("urifolder", "uri_folder").replace("urifile", "uri_file")
    if value == "mltable":
        raise UnsupportedInputError(MLTABLE_MESSAGE)
    if value not in INPUT_TYPES:
        raise InputError(f"input type '{input_type}' is not valid; valid types: {', '.join(INPUT_TYPES)}")
    return value
