"""``output_action: append_row``: every row of every mini-batch in one file (``predictions.csv``).

A part is the mini-batch's rows as text lines, as Azure's parallel run step writes them
(``outputs/rows.py``: a script's DataFrame space-separated, the MLflow scorer's
``row,prediction,file`` comma-separated, list items as their text), without a header; the output
is the parts concatenated byte for byte in mini-batch order (streamed, 1 MiB at a time).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, Any

from batchpoint.outputs.base import PartFileWriter
from batchpoint.outputs.rows import write_rows

#: the action's name (``entities.BatchDeploymentOutputAction.APPEND_ROW``; entities is not imported:
#: a deployment's environment runs workers from a copy of Batchpoint without pydantic)
APPEND_ROW = "append_row"
#: bytes copied at a time from a part into the output
CHUNK = 1 << 20


class AppendRowWriter(PartFileWriter):
    action = APPEND_ROW
    part_suffix = ".csv"

    def write_rows(self, result: Any, out: IO[bytes]) -> int:
        # buffered: to_csv's csv writer writes each row on its own (write_through cost ~15 % of its time)
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        try:
            return write_rows(result, text)
        finally:
            text.detach()  # flushes what it holds into ``out``, which stays open: the caller closes it

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        for src in parts:
            with src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
