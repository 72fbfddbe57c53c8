"""A job's output: where it may go, and writing it.

Where (checked at invoke, before the job exists — :func:`check_output_location`):

* The default location, ``azureml/<job>/score`` in the default data store, is every invoker's.
* Any other location (``OutputData`` / ``--output-path``) needs ``data/write`` on its data store
  (or on the store's storage account): Owner, Contributor, or DataWriter there.
* Even then an output never overlaps (is, lies inside, or holds) a reserved area — the upload
  area ``LocalUpload/`` and the jobs' area ``azureml/`` — nor a registered data asset, a model's
  source, a deployment's code, or another job's output folder. Overlaps are refused with 409.

Writing (:func:`write_output`): the mini-batch parts of an ``append_row`` job that its done log
names (``jobs/assembly.py``: exactly once, whatever was retried), in mini-batch order, streamed
into one file on the output data store (deterministic order, flat memory) — each part from the job
folder, or from the job's staging area on the output store where the engine's nodes wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import RoleAssignment, authorize, missing_permission_error
from batchpoint.jobs.assembly import output_parts, part_streams, staged_parts
from batchpoint.exceptions import BatchpointError, ConflictError, InputError, PlatformError, StorageError
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import JobRow
from batchpoint.uri.parse import DatastorePath, StorageUrl, parse_input_uri
from batchpoint.workspace import WorkspaceService

RESERVED_AREAS = {"LocalUpload": "the upload area", "azureml": "the jobs' output area"}


def output_location(output: dict[str, Any]) -> tuple[str, str]:
    """(data store name, folder path) of a job output."""
    parsed = parse_input_uri(output["path"])
    if not isinstance(parsed, DatastorePath):
        raise InputError(
            f"output path '{output['path']}' must be a data store path: azureml://datastores/<name>/paths/<folder>"
        )
    return parsed.datastore, normalize_relpath(parsed.path)


def _overlaps(a: str, b: str) -> bool:
    """Whether folder/file paths ``a`` and ``b`` are the same, or one lies inside the other."""
    return a == b or not a or not b or a.startswith(f"{b}/") or b.startswith(f"{a}/")


def _datastore_location(ws: WorkspaceService, path: str) -> tuple[str, str] | None:
    """(data store, path) of a registered path, when it is in one of the workspace's data stores."""
    try:
        parsed = parse_input_uri(path)
        if isinstance(parsed, DatastorePath):
            return parsed.datastore, normalize_relpath(parsed.path)
        if isinstance(parsed, StorageUrl) and parsed.scheme == "arm":
            _, rel, datastore, _ = ws.storage_url_spec(parsed)
            return (datastore, normalize_relpath(rel)) if datastore else None
    except BatchpointError:
        return None
    return None


def check_output_location(ws: WorkspaceService, output: dict[str, Any], principal: str | None,
                          assignments: list[RoleAssignment],
                          *, is_default: bool) -> tuple[str, str]:
    """Refuse an output location the caller may not write (403) or that overlaps data (409)."""
    datastore, folder = output_location(output)
    row = ws.store.get_datastore(datastore)
    if is_default:
        return datastore, folder
    account = (row.config or {}).get("account_name") or (row.config or {}).get("store_name")
    scopes = [f"datastore:{datastore}"] + ([f"storageaccount:{account}"] if account else [])
    if principal is None or not any(authorize(assignments, P.DATA_WRITE, s) for s in scopes):
        raise missing_permission_error(principal or "anonymous", P.DATA_WRITE, scopes[0])
    where = f"output location '{output['path']}'"
    if not folder:
        raise ConflictError(f"{where} is the root of data store '{datastore}', which would overlap everything in it; "
                            "give a folder: azureml://datastores/<name>/paths/<folder>")
    top = folder.split("/", 1)[0]
    if top in RESERVED_AREAS:
        raise ConflictError(f"{where} is inside {RESERVED_AREAS[top]} ({top}/), which only Batchpoint writes; "
                            "choose a folder outside LocalUpload/ and azureml/")
    for what, path in ws.store.registered_paths():
        found = _datastore_location(ws, path)
        if found and found[0] == datastore and _overlaps(folder, found[1]):
            raise ConflictError(f"{where} overlaps {what} at '{path}'; outputs never overwrite registered data: "
                                "choose a folder that neither holds nor lies inside it")
    check_no_other_job(ws, output, datastore, folder)
    return datastore, folder


def check_no_other_job(ws: WorkspaceService, output: dict[str, Any], datastore: str, folder: str) -> None:
    """409 when another job writes into, around or inside this output folder."""
    taken = ws.store.jobs_writing_under(datastore, folder, limit=1)
    if taken:
        raise ConflictError(f"output location '{output['path']}' overlaps the output of job '{taken[0].name}' "
                            f"(azureml://datastores/{datastore}/paths/{taken[0].output_folder}); give each job its "
                            "own folder")


def write_output(ws: WorkspaceService, job: JobRow, parts_dir: Path) -> None:
    """Concatenate the parts into the output file; a write that fails (the store full, read-only or
    unreachable) fails the job with a :class:`PlatformError` naming the location and the cause."""
    output = job.outputs["score"]
    datastore, folder = output_location(output)
    backend = open_backend(ws.datastore_spec(datastore))
    target = f"{folder}/{output['file_name']}" if folder else output["file_name"]
    parts = output_parts(ws, job)  # the done log's parts only, in order (jobs/assembly.py)
    try:
        with backend.open_write(target) as out:
            for src in part_streams(parts):  # the store's parts fetched a few ahead, in order
                with src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
    except (OSError, StorageError) as exc:
        cause = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f"{output['path'].rstrip('/')}/{output['file_name']}"
        staged = staged_parts(ws, job)
        kept = f"{parts_dir} and {staged.describe()}" if staged is not None else str(parts_dir)
        raise PlatformError(f"could not write the job's output {where} (data store '{datastore}', "
                            f"{backend.spec.describe()}): {cause}; the scored parts are kept in {kept}. Free "
                            "space there (or make it writable), or invoke again with another output location "
                            "(--output-path)", details={"location": where}) from exc
