"""Turn what a scorer returned into rows (no header), as Azure ML's ``append_row`` writes them.

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

pandas is not imported here: a result can only be a DataFrame or a Series when the scorer that
made it imported pandas, so the server (which imports this package to assemble outputs, never to
score) stays free of the scoring stack (tests/engines/test_server_stays_light.py).
"""

from __future__ import annotations

import csv
import io
import sys
from typing import IO, Any

#: a scoring script's DataFrame columns are separated by this (Azure's parallel run step)
SCRIPT_SEPARATOR = " "
#: the MLflow no-code deployment's ``row,prediction,file``
MLFLOW_SEPARATOR = ","
_SEPARATOR_ATTR = "batchpoint_separator"


def mark_mlflow_rows(frame: Any) -> Any:
    """Mark the MLflow scorer's frame (a ``pandas.DataFrame``) to be written comma-separated (the marker travels with the
    frame, in ``DataFrame.attrs``, so every engine's writer honours it)."""
    frame.attrs[_SEPARATOR_ATTR] = MLFLOW_SEPARATOR
    return frame


def write_rows(result: Any, out: IO[str]) -> int:
    """Write ``result`` (DataFrame, Series, list, tuple or None) as rows; return the row count."""
    if result is None:
        return 0
    pandas = sys.modules.get("pandas")  # loaded whenever the result can be one of its types
    if pandas is not None and isinstance(result, pandas.Series):
        result = result.to_frame()
    if pandas is not None and isinstance(result, pandas.DataFrame):
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
    """How many items succeeded, without writing them (``summary_only``)."""
    if result is None:
        return 0
    if isinstance(result, (str, bytes)):
        return 1
    try:
        return len(result)
    except TypeError:
        return write_rows(result, io.StringIO())
