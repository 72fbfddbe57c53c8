"""Write a job's ``append_row`` output: the mini-batch parts, in mini-batch order, streamed into
one file on the output data store (so the order is deterministic and memory stays flat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchpoint.storage.base import normalize_relpath
from batchpoint.storage.registry import open_backend
from batchpoint.uri.parse import DatastorePath, parse_input_uri
from batchpoint.exceptions import InputError


def output_location(output: dict[str, Any]) -> tuple[str, str]:
    """(data store name, folder path) of a job output."""
    parsed = parse_input_uri(output["path"])
    if not isinstance(parsed, DatastorePath):
        raise InputError(
            f"output path '{output['path']}' must be a data store path: azureml://datastores/<name>/paths/<folder>"
        )
    return parsed.datastore, normalize_relpath(parsed.path)


def write_output(ws: Any, job: Any, parts_dir: Path) -> None:
    output = job.outputs["score"]
    datastore, folder = output_location(output)
    backend = open_backend(ws.datastore_spec(datastore))
    target = f"{folder}/{output['file_name']}" if folder else output["file_name"]
    parts = sorted(parts_dir.glob("*.csv")) if parts_dir.is_dir() else []
    with backend.open_write(target) as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
