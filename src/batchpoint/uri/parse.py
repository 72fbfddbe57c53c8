"""Turn every spelling of a batch endpoint input into one tagged value — pure, no I/O.

:func:`parse_input_uri` accepts the spellings Azure ML batch endpoints accept (data store paths,
data asset references, storage URLs, local paths) and answers one of four frozen dataclasses:

* :class:`DatastorePath` — a folder or file in a registered data store;
* :class:`AssetRef` — a registered data asset, by version or by label;
* :class:`StorageUrl` — a storage account / bucket / plain HTTP(S) location;
* :class:`LocalPath` — a path on the caller's machine (uploaded by the caller).

Long-form references also name a workspace (:class:`WorkspaceRef`); checking that it is *this*
workspace is the caller's job, and so is checking hosts against SSRF. Refusals raise
:class:`~batchpoint.exceptions.InputError` or a subclass: ``UnsupportedInputError`` for MLTable and
V1 FileDataset inputs, ``UnsafeInputError`` for ``..`` segments. :func:`format_input_uri` writes
the canonical spelling back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from batchpoint import entities
from batchpoint.exceptions import InputError, UnsafeInputError, UnsupportedInputError
from batchpoint.storage import registry
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.kind import MalformedUrl, StorageUrl

# A data store's type is a storage kind: ``entities`` (below ``storage``) checks ``Datastore.type``
# against the registry's names from here, where the server and the SDK both read the kinds
# (``storage/registry.py`` itself runs in workers too, which import no ``entities``: pydantic).
entities.accept_types("datastore", registry.datastore_kinds)

MLTABLE_MESSAGE = (
    "MLTable inputs are not supported for batch endpoints; give the folder that holds the files as "
    "a uri_folder input (or one file as uri_file)"
)

__all__ = [
    "INPUT_SPELLINGS",
    "AssetRef",
    "DatastorePath",
    "LocalPath",
    "ParsedUri",
    "StorageUrl",
    "WorkspaceRef",
    "format_input_uri",
    "parse_input_uri",
]


@dataclass(frozen=True)
class WorkspaceRef:
    """The workspace a long-form reference names (to be checked by the caller)."""

    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class DatastorePath:
    """``path`` (normalised, ``''`` = the root) inside the data store named ``datastore``."""

    datastore: str
    path: str
    workspace: WorkspaceRef | None = None


@dataclass(frozen=True)
class AssetRef:
    """A data asset; exactly one of ``version`` / ``label`` is set."""

    name: str
    version: str | None = None
    label: str | None = None
    workspace: WorkspaceRef | None = None


@dataclass(frozen=True)
class LocalPath:
    """A path on the caller's machine, as given (the caller resolves it against its cwd)."""

    path: str


ParsedUri = DatastorePath | AssetRef | StorageUrl | LocalPath

INPUT_SPELLINGS = """\
Valid inputs:
  data store path  azureml://datastores/<datastore>/paths/<path>   (or azureml:/datastores/...)
                   <workspace-id>/datastores/<datastore>/paths/<path>
  data asset       azureml:<asset>:<version>  or  azureml:<asset>@latest   (the azureml: is optional)
                   <workspace-id>/data/<asset>/versions/<version>   (or .../versions/labels/<label>)
                   azureml://locations/<location>/workspaces/<ws>/data/<asset>/versions/<version>
  storage URL      https://<account>.blob.core.windows.net/<container>/<path>   (.dfs. for ADLS Gen2)
                   wasbs://<container>@<account>.blob.core.windows.net/<path>
                   abfss://<filesystem>@<account>.dfs.core.windows.net/<path>
                   adl://<store>.azuredatalakestore.net/<path>   s3://<bucket>/<key>   https://<host>/<path>
                   <storage-account-id>/paths/<container>/<path>
  local path       ./folder, ./file.csv, /absolute/path   (./name@x forces a local path)
  <workspace-id> is /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices
  /workspaces/<ws> or azureml://subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>; <storage-account-id>
  is [azureml:/]/subscriptions/<sub>/resourcegroups/<rg>/providers/microsoft.storage/storageaccounts/<account>.
MLTable files and V1 FileDatasets (azureml://datasets/...) are not supported."""

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_VERSION = r"[A-Za-z0-9_.-]+"
_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_SHORT_ASSET = re.compile(rf"(?P<name>{_NAME})(?::(?P<version>{_VERSION})|@(?P<label>{_VERSION}))")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_WS_BY_GROUP = re.compile(
    r"subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
    r"(?:/providers/microsoft\.machinelearningservices)?/workspaces/(?P<ws>[^/]+)(?:/(?P<tail>.*))?",
    _FLAGS,
)
_WS_BY_LOCATION = re.compile(r"locations/(?P<loc>[^/]+)/workspaces/(?P<ws>[^/]+)(?:/(?P<tail>.*))?", _FLAGS)
_STORAGE_ID = re.compile(
    r"subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.storage"
    r"/storageaccounts/(?P<account>[^/]+)(?:/paths/(?P<container>[^/]+)(?:/(?P<path>.*))?)?",
    _FLAGS,
)
_DATASTORE = re.compile(r"datastores/(?P<ds>[^/]+)(?P<paths>/paths(?:/(?P<path>.*))?)?", _FLAGS)
_DATASTORE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DATA_ASSET = re.compile(
    r"data/(?P<name>[^/]+)/versions/(?:labels/(?P<label>[^/]+)|(?P<version>(?!labels$)[^/]+))", _FLAGS
)
_NAME_RULE = "letters, digits, '_', '.', '-'"


# -- entry points ----------------------------------------------------------------------------


def parse_input_uri(text: str) -> ParsedUri:
    """Parse one input spelling; raise an :class:`InputError` (or subclass) saying what is valid."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            f"the input is empty; give a data store path, data asset, URL or local path.\n{INPUT_SPELLINGS}"
        )
    stripped = text.strip()
    parsed = _dispatch(stripped)
    _refuse_mltable(parsed, stripped)
    return parsed


def format_input_uri(parsed: ParsedUri) -> str:
    """The canonical spelling of ``parsed``; ``parse_input_uri`` reads it back to an equal value."""
    if isinstance(parsed, LocalPath):
        return parsed.path
    if isinstance(parsed, StorageUrl):
        return parsed.original
    prefix = _format_workspace(parsed.workspace)
    if isinstance(parsed, DatastorePath):
        return f"{prefix}datastores/{parsed.datastore}/paths/{parsed.path}"
    if parsed.workspace is None:
        pin = f":{parsed.version}" if parsed.label is None else f"@{parsed.label}"
        return f"azureml:{parsed.name}{pin}"
    versions = parsed.version if parsed.label is None else f"labels/{parsed.label}"
    return f"{prefix}data/{parsed.name}/versions/{versions}"


def _format_workspace(ws: WorkspaceRef | None) -> str:
    if ws is None:
        return "azureml://"
    if ws.subscription_id is not None:
        group = f"subscriptions/{ws.subscription_id}/resourcegroups/{ws.resource_group}"
        return f"azureml://{group}/workspaces/{ws.workspace}/"
    return f"azureml://locations/{ws.location}/workspaces/{ws.workspace}/"


def _dispatch(text: str) -> ParsedUri:
    lower = text.lower()
    if lower.startswith("azureml:"):
        return _parse_azureml(text, text[len("azureml:") :].strip("/"))
    if lower.startswith("/subscriptions/"):
        return _parse_resource_id(text, text.strip("/"))
    scheme = _SCHEME.match(text)
    if scheme:
        return _parse_url(text, scheme.group(1).lower())
    if "/" not in text:
        asset = _short_asset(text)
        if asset is not None:
            return asset
    return LocalPath(text)


# -- errors ----------------------------------------------------------------------------------


def _show(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _malformed(text: str, why: str) -> InputError:
    return InputError(f"input {_show(text)} is not a valid reference: {why}.\n{INPUT_SPELLINGS}")


def _v1_dataset(text: str) -> UnsupportedInputError:
    return UnsupportedInputError(
        f"input {_show(text)} references a V1 FileDataset; V1 datasets are deprecated and not supported "
        "by batch endpoints. Register the files as a uri_folder or uri_file data asset and give "
        "azureml:<asset>:<version> (or azureml:<asset>@latest) instead."
    )


def _safe_path(text: str, raw: str) -> str:
    """``raw`` normalised (no leading/trailing or doubled ``/``, no ``.``); ``..`` (also
    percent-encoded) and NUL are refused."""
    try:
        return normalize_relpath(raw)
    except UnsafeInputError as exc:
        raise UnsafeInputError(f"input {_show(text)}: {exc.message}", details=exc.details) from exc


def _refuse_mltable(parsed: ParsedUri, text: str) -> None:
    path = parsed.path if isinstance(parsed, DatastorePath | StorageUrl | LocalPath) else ""
    segments = [s for s in path.replace("\\", "/").split("/") if s]
    if segments and segments[-1].lower() == "mltable":
        raise UnsupportedInputError(
            f"input {_show(text)} names an MLTable file. MLTable inputs are not supported for batch "
            "endpoints; give the folder holding the data files as uri_folder (or one file as uri_file)."
        )


# -- azureml: references ---------------------------------------------------------------------


def _parse_azureml(text: str, body: str) -> ParsedUri:
    """``body`` is what follows ``azureml:`` with the slashes around it stripped."""
    head = body.partition("/")[0].lower()
    if head == "datasets":
        raise _v1_dataset(text)
    if head == "datastores":
        return _parse_datastore(text, body, None, require_paths=True)
    if head in ("subscriptions", "locations"):
        return _parse_resource_id(text, body)
    if body and "/" not in body:
        asset = _short_asset(body)
        if asset is None:
            why = "a data asset needs a version (azureml:<asset>:<version>) or a label (azureml:<asset>@latest)"
            raise _malformed(text, why)
        return asset
    raise _malformed(text, "it names neither a data store path nor a data asset")


def _parse_resource_id(text: str, body: str) -> ParsedUri:
    """``body`` starts at ``subscriptions/`` or ``locations/`` (no slashes around it)."""
    storage = _STORAGE_ID.fullmatch(body)
    if storage:
        return _arm_storage(text, storage)
    match = _WS_BY_GROUP.fullmatch(body)
    if match:
        ws = WorkspaceRef(subscription_id=match["sub"], resource_group=match["rg"], workspace=match["ws"])
    else:
        match = _WS_BY_LOCATION.fullmatch(body)
        if not match:
            raise _malformed(text, "it is not a workspace, data store, data asset or storage account id")
        ws = WorkspaceRef(workspace=match["ws"], location=match["loc"])
    return _parse_workspace_tail(text, match["tail"] or "", ws)


def _parse_workspace_tail(text: str, tail: str, ws: WorkspaceRef) -> ParsedUri:
    head = tail.partition("/")[0].lower()
    if head == "datasets":
        raise _v1_dataset(text)
    if head == "datastores":
        return _parse_datastore(text, tail, ws, require_paths=False)
    match = _DATA_ASSET.fullmatch(tail)
    if match:
        return _asset(text, match["name"], match["version"], match["label"], ws)
    if not tail:
        raise _malformed(text, "it names a workspace, not a data store path or a data asset")
    raise _malformed(text, f"after the workspace, {tail!r} is neither datastores/... nor data/.../versions/...")


def _parse_datastore(text: str, tail: str, ws: WorkspaceRef | None, *, require_paths: bool) -> DatastorePath:
    match = _DATASTORE.fullmatch(tail)
    if not match or (require_paths and match["paths"] is None):
        raise _malformed(text, "a data store path is spelled datastores/<datastore>/paths/<path>")
    if not _DATASTORE_NAME.fullmatch(match["ds"]):
        raise _malformed(text, f"data store name {match['ds']!r} is not valid ({_NAME_RULE})")
    return DatastorePath(datastore=match["ds"], path=_safe_path(text, match["path"] or ""), workspace=ws)


def _asset(text: str, name: str, version: str | None, label: str | None, ws: WorkspaceRef | None) -> AssetRef:
    if not re.fullmatch(_NAME, name):
        raise _malformed(text, f"data asset name {name!r} is not valid ({_NAME_RULE})")
    value = version if version is not None else label
    if value is None or not re.fullmatch(_VERSION, value):
        raise _malformed(text, f"data asset version or label {value!r} is not valid ({_NAME_RULE})")
    return AssetRef(name=name, version=version, label=label, workspace=ws)


def _short_asset(body: str) -> AssetRef | None:
    match = _SHORT_ASSET.fullmatch(body)
    if not match:
        return None
    return AssetRef(name=match["name"], version=match["version"], label=match["label"])


def _arm_storage(text: str, match: re.Match[str]) -> StorageUrl:
    if match["container"] is None:
        raise _malformed(text, "a storage account id needs /paths/<container>/<path> after it")
    return StorageUrl(
        kind="azure_blob",
        account=match["account"],
        container=match["container"],
        path=_safe_path(text, match["path"] or ""),
        endpoint_suffix=None,
        original=text,
        scheme="arm",
    )


# -- URLs ------------------------------------------------------------------------------------


def _parse_url(text: str, scheme: str) -> StorageUrl:
    """A storage URL, parsed by the storage kinds that declare ``scheme`` (``storage/registry.py``)."""
    parsers = registry.scheme_parsers(scheme)
    if not parsers:
        valid = ", ".join(f"{s}://" for s in registry.url_schemes())
        raise InputError(
            f"input {_show(text)}: URLs starting {scheme}:// are not supported (valid schemes: {valid}).\n{INPUT_SPELLINGS}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise _malformed(text, f"the URL cannot be parsed ({exc})") from exc
    hostport = parts.netloc.rpartition("@")[2].lower()
    if not hostport:
        raise _malformed(text, "the URL has no host")
    path = _safe_path(text, unquote(parts.path))
    for parser in parsers:
        try:
            parsed = parser.parse(text, scheme, parts, hostport, path)
        except MalformedUrl as exc:
            raise _malformed(text, str(exc)) from None
        if parsed is not None:
            return parsed
    raise _malformed(text, f"no storage kind reads this {scheme}:// URL")
