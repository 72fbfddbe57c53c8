"""Where a job's ``score`` output goes: parsed once, at invoke, and read from the job row after.

The invoke (``jobs/submit.py``, ``jobs/rerun.py``) parses the output path with
:func:`output_location` and stores the result on the job row (``output_datastore``,
``output_folder``); every later step (writing parts to a staging area, assembling, the partial
output, the scripts' ``AZUREML_BI_OUTPUT_PATH`` files) reads it back with :func:`job_output` instead
of parsing the path again. A row written before those columns existed is parsed once more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchpoint.exceptions import InputError
from batchpoint.storage.base import normalize_relpath
from batchpoint.store.tables import JobRow
from batchpoint.uri.parse import DatastorePath, parse_input_uri


def output_location(output: dict[str, Any]) -> tuple[str, str]:
    """(data store name, folder path) of a job output's ``path`` text."""
    parsed = parse_input_uri(output["path"])
    if not isinstance(parsed, DatastorePath):
        raise InputError(
            f"output path '{output['path']}' must be a data store path: azureml://datastores/<name>/paths/<folder>"
        )
    return parsed.datastore, normalize_relpath(parsed.path)


@dataclass(frozen=True)
class OutputTarget:
    """A job's ``score`` output: its data store, folder on it, file name and the path as given."""

    datastore: str
    folder: str
    file_name: str | None
    path: str  # the output's path as the job shows it (azureml://datastores/<name>/paths/<folder>)

    def at(self, rel: str) -> str:
        """``rel`` inside the output folder, as a path in the data store."""
        return f"{self.folder}/{rel}" if self.folder else rel

    def shown(self, rel: str) -> str:
        """``rel`` inside the output folder, as the user names it."""
        return f"{self.path.rstrip('/')}/{rel}"


def job_output(job: JobRow) -> OutputTarget | None:
    """The job's ``score`` output (None: it has none), from the location its row stores parsed."""
    output = (job.outputs or {}).get("score")
    if not output:
        return None
    if job.output_datastore is not None and job.output_folder is not None:
        datastore, folder = job.output_datastore, job.output_folder
    else:  # a row from before the parsed columns
        datastore, folder = output_location(output)
    return OutputTarget(datastore, folder, output.get("file_name"), output["path"])
