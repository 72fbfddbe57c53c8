"""Turn what a scorer returned into ``append_row`` lines (no header), as Azure ML writes them.

=====================================  ========================================================
a scoring script's ``pandas.DataFrame``  one line per row, the columns separated by a space, no
                                         header, no index (pandas' ``to_csv(sep=" ")``: a value
                                         holding a space, a quote or a line break is put in
                                         double quotes). Azure's samples read the file back with
                                         ``pd.read_csv(..., header=None, names=[...], sep=' ')``.
a ``Series``                             as a one-column DataFrame
a list / tuple (or any iterable)         one line per element: ``str(element)`` as it is (a list
                                         element comes out as Python writes it, ``['a', 1]``:
                                         Azure's docs warn that complex types "are transformed to
                                         string")
a ``str`` / ``bytes``                    one line
``None``                                 nothing
the MLflow no-code scorer's frame        ``row,prediction,file`` (comma separated), as Azure's
                                         MLflow deployments write ``predictions.csv``
=====================================  ========================================================

What Azure's documents and samples show, and what is not honoured, is in docs/azure-compatibility.md.
"""

from __future__ import annotations

import csv
import io
from typing import IO, Any

import pandas as pd

#: a scoring script's DataFrame columns are separated by this (Azure's parallel run step)
SCRIPT_SEPARATOR = " "
#: the MLflow no-code deployment's ``row,prediction,file``
MLFLOW_SEPARATOR = ","
_SEPARATOR_ATTR = "batchpoint_separator"


def mark_mlflow_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mark the MLflow scorer's frame to be written comma-separated (the marker travels with the
    frame, in ``DataFrame.attrs``, so every engine's writer honours it)."""
    frame.attrs[_SEPARATOR_ATTR] = MLFLOW_SEPARATOR
    return frame


def write_rows(result: Any, out: IO[str]) -> int:
    """Write ``result`` (DataFrame, Series, list, tuple or None) as rows; return the row count."""
    if result is None:
        return 0
    if isinstance(result, pd.Series):
        result = result.to_frame()
    if isinstance(result, pd.DataFrame):
        separator = result.attrs.get(_SEPARATOR_ATTR, SCRIPT_SEPARATOR)
        result.to_csv(out, sep=separator, header=False, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        return len(result)
    if isinstance(result, (str, bytes)):
        result = [result]
    count = 0
    for item in result:
        out.write(f"{item.decode() if isinstance(item, bytes) else item}\n")
        count += 1
    return count


def count_rows(result: Any) -> int:
    """How many items succeeded (``summary_only``: nothing is written)."""
    if result is None:
        return 0
    if isinstance(result, (str, bytes)):
        return 1
    try:
        return len(result)
    except TypeError:
        return write_rows(result, io.StringIO())
