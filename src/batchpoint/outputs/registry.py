"""Output action → its writer, by ``"module:Class"`` (made on first use).

Adding an output format is one module under ``batchpoint/outputs/`` and one line in
:data:`WRITERS`, e.g. ``"parquet": "batchpoint.outputs.parquet:ParquetWriter"`` (and the action's
name among ``output_action``'s values in ``entities.py``, which the API validates). A module whose
library is missing is named with an install hint (``_internal/plugins.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchpoint._internal.plugins import load
from batchpoint.exceptions import ValidationError
from batchpoint.outputs.append_row import APPEND_ROW
from batchpoint.outputs.base import OutputWriter
from batchpoint.outputs.summary_only import SUMMARY_ONLY

# action: "module:Class" of its writer (or, once loaded or registered, the writer)
WRITERS: dict[str, str | OutputWriter] = {
    APPEND_ROW: "batchpoint.outputs.append_row:AppendRowWriter",
    SUMMARY_ONLY: "batchpoint.outputs.summary_only:SummaryOnlyWriter",
}


def known_actions() -> list[str]:
    return sorted(WRITERS)


def writer_for(action: str | None) -> OutputWriter:
    """The writer of output action ``action`` (None: ``append_row``, the default of a deployment);
    :class:`ValidationError` naming the valid actions for any other name."""
    action = action or APPEND_ROW
    found = WRITERS.get(action)
    if found is None:
        raise ValidationError(f"unknown output action '{action}'; valid actions: {', '.join(known_actions())}")
    if isinstance(found, str):
        found = load(found, None, f"output action '{action}'")()
        WRITERS[action] = found
    return found


def worker_writer(start: Mapping[str, Any]) -> OutputWriter:
    """The writer of the job a worker's ``start`` (or ``job``) message describes: the one registered
    under its ``output_action`` (``worker/protocol.py job_config``; absent: append_row)."""
    return writer_for(start.get("output_action"))


def register(writer: OutputWriter) -> OutputWriter:
    """Make ``writer`` the one of its ``action`` (a format of a later issue, or a test's)."""
    if not isinstance(writer, OutputWriter):
        raise TypeError(f"{writer!r} is not an OutputWriter (action, writes_parts, part_suffix, part_name, "
                        "write_part, assemble)")
    WRITERS[writer.action] = writer
    return writer
