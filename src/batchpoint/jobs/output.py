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

import logging
import os
import time
from pathlib import Path
from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import RoleAssignment, authorize, missing_permission_error
from batchpoint.jobs.assembly import RemotePart, output_parts, part_streams, staged_parts
from batchpoint.exceptions import (
    BatchpointError, ConflictError, InputError, PlatformError, StorageError, TransientStorageError,
)
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import JobRow
from batchpoint.uri.parse import DatastorePath, StorageUrl, parse_input_uri
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

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


#: pauses between whole tries of an output write that failed transiently (the store unreachable)
OUTPUT_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def write_output(ws: WorkspaceService, job: JobRow, parts_dir: Path) -> None:
    """Concatenate the parts into the output file. A transient failure (the store unreachable,
    5xx, throttled) writes the whole file again, with pauses, for ``jobs.output_retry_s`` (120 s,
    about as long as a mini-batch's input reads ride out an outage: docs/faults.md) after the first
    failure; a write that still fails, or fails otherwise (the store full, read-only), fails the job
    with a :class:`PlatformError` naming the location, the cause, where the scored parts are kept,
    and how to finish the job without scoring again (``job rerun``)."""
    output = job.outputs["score"]
    datastore, folder = output_location(output)
    backend = open_backend(ws.datastore_spec(datastore))
    target = f"{folder}/{output['file_name']}" if folder else output["file_name"]
    budget = ws.settings.jobs.output_retry_s
    first_failure: float | None = None
    drop_stale_temporaries(backend, folder, job.name)
    for attempt in range(1_000_000):
        parts = output_parts(ws, job)  # the done log's parts only, in order (jobs/assembly.py)
        try:
            with backend.open_write(target) as out:
                for src in part_streams(parts):  # the store's parts fetched a few ahead, in order
                    with src:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
            return
        except TransientStorageError as exc:
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            pause = OUTPUT_PAUSES_S[min(attempt, len(OUTPUT_PAUSES_S) - 1)]
            if now + pause - first_failure > budget:
                raise _output_failed(ws, job, backend, parts, parts_dir, str(exc), now - first_failure) from exc
            log.warning("job %s: writing its output failed (%s); writing it again in %.0f s", job.name, exc, pause)
            time.sleep(pause)
        except (OSError, StorageError) as exc:
            cause = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _output_failed(ws, job, backend, parts, parts_dir, cause, None) from exc


def drop_stale_temporaries(backend: Any, folder: str, job_name: str) -> int:
    """Remove the half-written ``.tmp-*`` files a server killed while it wrote this job's output
    left in the output folder (a local store writes a temporary file, then renames it). Only this
    job writes there (overlaps are refused, its reruns come after it), one file at a time, so any
    such file is a leftover. Returns how many went; never raises."""
    local = backend.local_path(folder or "")
    if not local or not os.path.isdir(local):
        return 0
    dropped = 0
    try:
        with os.scandir(local) as entries:
            for entry in entries:
                if entry.name.startswith(".tmp-") and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    dropped += 1
    except OSError as exc:
        log.warning("job %s: could not remove the half-written files in %s: %s", job_name, local, exc)
    if dropped:
        log.warning("job %s: removed %d half-written file(s) (.tmp-*) from its output folder %s, left by a server "
                    "that stopped while it wrote them", job_name, dropped, local)
    return dropped


def _output_failed(ws: WorkspaceService, job: JobRow, backend: Any, parts: list[Any], parts_dir: Path,
                   cause: str, tried_s: float | None) -> PlatformError:
    """The job's failure when its output could not be written: where, why, for how long, where its
    scored parts are (only the locations that hold some), and how to finish it."""
    output = job.outputs["score"]
    datastore, _ = output_location(output)
    where = f"{output['path'].rstrip('/')}/{output['file_name']}"
    staged = staged_parts(ws, job)
    remote = any(isinstance(p, RemotePart) for p in parts)
    local = any(not isinstance(p, RemotePart) for p in parts) or not parts
    kept = " and ".join(([str(parts_dir)] if local else []) + ([staged.describe()] if remote and staged else []))
    tried = f", still failing after {tried_s:.0f} s of retries" if tried_s is not None else ""
    return PlatformError(
        f"could not write the job's output {where} (data store '{datastore}', {backend.spec.describe()}): "
        f"{cause}{tried}; the scored parts are kept in {kept}. Once the store takes writes again (free space "
        f"there, make it writable or reachable), finish the job without scoring again: batchpoint job rerun "
        f"--name {job.name} (it writes {where}); or invoke again with another output location (--output-path)",
        details={"location": where, "parts": kept})
