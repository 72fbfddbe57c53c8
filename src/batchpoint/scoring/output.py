"""How a scorer's result becomes rows: moved to :mod:`batchpoint.outputs.rows` (the output
writers own rows → parts → output); these names stay for the scorers and older imports."""

from __future__ import annotations

from batchpoint.outputs.rows import (
    MLFLOW_SEPARATOR, SCRIPT_SEPARATOR, count_rows, mark_mlflow_rows, write_rows,
)

__all__ = ["MLFLOW_SEPARATOR", "SCRIPT_SEPARATOR", "count_rows", "mark_mlflow_rows", "write_rows"]
