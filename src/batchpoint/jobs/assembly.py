"""Which part files make a job's output, in which order — every input row exactly once.

A mini-batch counts as done only when its result is durable: the worker writes its part to a
temporary name, fsyncs it and renames it to ``parts/<key>.csv`` before it reports success, and
the runner then appends the mini-batch to ``done.jsonl`` (fsynced), naming the keys of its parts
(``"parts": ["00000007-0000"]``, or the succeeding pieces of a split one). Assembly reads *only*
the done log: a part file on disk that the log does not name is from an attempt that was
superseded — the whole mini-batch whose worker timed out after writing it and that was then split
into pieces, a mini-batch rescored after the server died before recording it — and is never
assembled. Order: by mini-batch index, then part key (pieces in file order), so two runs of one
job over the same files write the same file.

A rerun of the failed files (``jobs/rerun.py``) merges: its output is the first job's assembled
parts, then its own (:func:`output_parts` follows ``settings.rerun.merge_with`` back to the first
job). A canceled job's finished parts are assembled too and labelled partial
(:func:`write_partial_output`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from batchpoint.exceptions import BatchpointError, PlatformError
from batchpoint.jobs.folder import JobFolder, JsonLines
from batchpoint.jobs.states import JobStatus
from batchpoint.store.tables import JobRow
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)

#: the marker written beside a canceled job's output
PARTIAL_MARKER = "_PARTIAL.json"


def finished_parts(folder: JobFolder) -> list[Path]:
    """The part files of the job's finished mini-batches, as its done log names them, in order."""
    parts_dir = Path(folder.parts_dir)
    named: dict[int, list[str] | None] = {}
    for entry in JsonLines(folder.backend, folder.DONE).entries():
        named[int(entry["index"])] = entry.get("parts")  # the last record of an index wins
    found: list[Path] = []
    for index in sorted(named):
        keys = named[index]
        if keys is None:  # a done log from before records named their parts: the index's parts on disk
            found.extend(sorted(parts_dir.glob(f"{index:08d}-*.csv")))
            continue
        for key in sorted(keys):
            part = parts_dir / f"{key}.csv"
            if not part.is_file():
                raise PlatformError(f"the part {part} of finished mini-batch {index} is missing from the job folder "
                                    "(removed by hand?); invoke the job again", details={"part": str(part)})
            found.append(part)
    return found


def merge_chain(ws: WorkspaceService, job: JobRow) -> list[JobRow]:
    """The jobs whose parts make ``job``'s output: the first job of a rerun chain first."""
    chain, seen = [job], {job.name}
    while True:
        base = ((chain[-1].settings or {}).get("rerun") or {}).get("merge_with")
        if not base or base in seen:
            break
        seen.add(base)
        chain.append(ws.store.get_job(base))
    return chain[::-1]


def output_parts(ws: WorkspaceService, job: JobRow) -> list[Path]:
    return [part for row in merge_chain(ws, job)
            for part in finished_parts(JobFolder.local(ws.settings.jobs_dir, row.name))]


def write_partial_output(ws: WorkspaceService, name: str) -> bool:
    """For a job that was canceled while it ran: write the rows of its finished mini-batches to its
    output, with a ``_PARTIAL.json`` marker beside them, and mark the output ``partial`` (shown by
    ``job show``; ``job download`` says so). Returns whether it did. Never raises: the job is
    Canceled whatever happens here."""
    from batchpoint.jobs.output import write_output  # output imports this module

    job = ws.store.get_job(name)
    if job.status != JobStatus.CANCELED.value or (job.settings or {}).get("output_action") != "append_row":
        return False
    try:
        write_output(ws, job, Path(JobFolder.local(ws.settings.jobs_dir, name).parts_dir))
        _write_marker(ws, job)
        outputs = dict(job.outputs or {})
        outputs["score"] = {**outputs["score"], "partial": True}
        ws.store.update_job(name, outputs=outputs)
        return True
    except (BatchpointError, OSError) as exc:
        log.warning("job %s: could not write its partial output: %s", name, exc)
        return False


def _write_marker(ws: WorkspaceService, job: JobRow) -> None:
    from batchpoint.jobs.output import output_location
    from batchpoint.storage.registry import open_backend

    datastore, folder = output_location(job.outputs["score"])
    backend = open_backend(ws.datastore_spec(datastore))
    marker: dict[str, Any] = {
        "partial": True, "job": job.name, "status": job.status,
        "reason": "the job was canceled; the output holds only the mini-batches finished before the cancel",
        "mini_batches_completed": job.mini_batches_completed, "mini_batches_total": job.mini_batches_total,
        "files_completed": job.files_completed, "files_total": job.files_total, "rows": job.rows,
    }
    target = f"{folder}/{PARTIAL_MARKER}" if folder else PARTIAL_MARKER
    with backend.open_write(target) as out:
        out.write(json.dumps(marker, indent=2).encode() + b"\n")
