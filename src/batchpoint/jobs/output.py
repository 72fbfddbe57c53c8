"""A job's output: where it may go, and writing it.

Where (checked at invoke, before the job exists — :func:`check_output_location`):

* The default location, ``azureml/<job>/score`` in the default data store, is every invoker's.
* Any other location (``OutputData`` / ``--output-path``) needs ``data/write`` on its data store
  (or on the store's storage account): Owner, Contributor, or DataWriter there.
* Even then an output never overlaps (is, lies inside, or holds) a reserved area — the upload
  area ``LocalUpload/`` and the jobs' area ``azureml/`` — nor a registered data asset, a model's
  source, a deployment's code, or another job's output folder. Overlaps are refused with 409.

Writing it is ``jobs/assembly.py`` (:func:`write_output`, named here too) with the job's output
writer (``outputs/``); the location is parsed once, at invoke (:func:`output_location`, in
``jobs/output_target.py``), stored on the job row and read from there after."""

from __future__ import annotations

import logging
from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import RoleAssignment, authorize, missing_permission_error
from batchpoint.exceptions import BatchpointError, ConflictError
from batchpoint.jobs.assembly import drop_stale_temporaries, write_output
from batchpoint.jobs.output_target import output_location
from batchpoint.storage.base import normalize_relpath
from batchpoint.uri.parse import DatastorePath, StorageUrl, parse_input_uri
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

__all__ = ["RESERVED_AREAS", "check_no_other_job", "check_output_location", "drop_stale_temporaries",
           "output_location", "write_output"]

RESERVED_AREAS = {"LocalUpload": "the upload area", "azureml": "the jobs' output area"}


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
                          *, is_default: bool, allow_jobs: frozenset[str] = frozenset()) -> tuple[str, str]:
    """Refuse an output location the caller may not write (403) or that overlaps data (409).
    ``allow_jobs``: jobs whose output it may be (the rerun of a job that failed while writing its
    output writes where that job would have, ``jobs/rerun.py``)."""
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
    check_no_other_job(ws, output, datastore, folder, allow_jobs)
    return datastore, folder


def check_no_other_job(ws: WorkspaceService, output: dict[str, Any], datastore: str, folder: str,
                       allow_jobs: frozenset[str] = frozenset()) -> None:
    """409 when another job (not one of ``allow_jobs``) writes into, around or inside this output folder."""
    taken = [j for j in ws.store.jobs_writing_under(datastore, folder, limit=len(allow_jobs) + 1)
             if j.name not in allow_jobs]
    if taken:
        raise ConflictError(f"output location '{output['path']}' overlaps the output of job '{taken[0].name}' "
                            f"(azureml://datastores/{datastore}/paths/{taken[0].output_folder}); give each job its "
                            "own folder")
