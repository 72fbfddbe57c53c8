"""``output_action: summary_only``: rows are counted, never written.

No part, no output file: the job's output holds only what its scoring scripts wrote to
``AZUREML_BI_OUTPUT_PATH`` (``jobs/bi_output.py``) and the errors file, and its counters say how
many rows each mini-batch returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from batchpoint.outputs.rows import count_rows

#: the action's name (``entities.BatchDeploymentOutputAction.SUMMARY_ONLY``, see append_row.py)
SUMMARY_ONLY = "summary_only"


class SummaryOnlyWriter:
    action = SUMMARY_ONLY
    writes_parts = False
    part_suffix = ""

    def part_name(self, key: str) -> str:
        return key  # never written

    def write_part(self, parts: Path, key: str, result: Any) -> int:
        return count_rows(result)

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        """Nothing to assemble: a summary_only job has no output file."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(action={self.action!r})"
