"""A job's outputs: the files of one, one file's bytes, every output's files (the web page's links)
and the job's errors file. A child job's outputs are its parent's (the same files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from batchpoint.exceptions import BatchpointError, NotFoundError
from batchpoint.jobs import children
from batchpoint.jobs.errors_file import errors_file_name
from batchpoint.jobs.output import output_location
from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.store.tables import JobRow
from batchpoint.usecases import files
from batchpoint.usecases.services import Services


def output_of(job: JobRow, output_name: str, asked: str | None = None) -> dict[str, Any]:
    """The job's output ``output_name``; a 404 naming the outputs it has."""
    outputs = job.outputs or {}
    if output_name not in outputs:
        raise NotFoundError(f"job '{asked or job.name}' has no output '{output_name}'; outputs: "
                            f"{', '.join(outputs) or 'none'}")
    return outputs[output_name]


def list_output(sv: Services, name: str, output_name: str) -> dict[str, Any]:
    """``{"name", "path", "files"}``: the files of job ``name``'s output, relative to its folder
    (none before the job wrote them)."""
    output = output_of(children.job_row(sv.store, name), output_name, name)
    return {"name": output_name, "path": output["path"], "files": _files(sv, output)}


def _files(sv: Services, output: dict[str, Any]) -> list[str]:
    datastore, folder = output_location(output)
    backend = open_backend(sv.workspace.datastore_spec(datastore))
    if not backend.is_dir(folder):
        return []
    return [info.path[len(folder):].lstrip("/") for info in backend.iter_files(folder)]


def read_output_file(sv: Services, name: str, output_name: str, path: str) -> Iterator[bytes]:
    """The bytes of file ``path`` of job ``name``'s output ``output_name`` (404s name what is missing)."""
    return open_file(sv, children.job_row(sv.store, name), output_name, path, name)[1]


def open_file(sv: Services, job: JobRow, output_name: str, path: str,
              asked: str | None = None) -> tuple[str, Iterator[bytes]]:
    """(the file's path in the output, its bytes in chunks) of file ``path`` of ``job``'s output."""
    datastore, folder = output_location(output_of(job, output_name, asked))
    rel = normalize_relpath(path)
    return rel, files.read_spec(sv.workspace.datastore_spec(datastore), f"{folder}/{rel}" if folder else rel)


def output_files(sv: Services, job: JobRow) -> list[dict[str, str]]:
    """``{"output", "path"}`` of every file of every output; an output whose store cannot be read
    now is left out (a page shows no link rather than failing)."""
    found = []
    for out_name, output in (job.outputs or {}).items():
        try:
            found += [{"output": out_name, "path": path} for path in _files(sv, output)]
        except BatchpointError:
            continue
    return found


def errors_file_lines(sv: Services, job: JobRow) -> Iterator[dict[str, Any]] | None:
    """The lines of the job's errors file, read as they are taken; None when it has none (yet). A
    store that cannot be read raises its BatchpointError, a line that is not JSON ValueError."""
    datastore, folder = output_location((job.outputs or {}).get("score"))  # type: ignore[arg-type]
    backend = open_backend(sv.workspace.datastore_spec(datastore))
    path = f"{folder}/{errors_file_name(job)}" if folder else errors_file_name(job)
    if not backend.is_file(path):
        return None

    def lines() -> Iterator[dict[str, Any]]:
        with backend.open_read(path) as handle:
            for raw in handle:
                yield json.loads(raw)

    return lines()
