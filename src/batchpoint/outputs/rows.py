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
        if not _write_plain(result, separator, out):
            result.to_csv(out, sep=separator, header=False, index=False, lineterminator="\n",
                          quoting=csv.QUOTE_MINIMAL)
        return len(result)
    if isinstance(result, (str, bytes)):
        result = [result]
    count = 0
    for item in result:
        out.write(f"{item.decode() if isinstance(item, bytes) else item}\n")
        count += 1
    return count


#: rows formatted and written at a time by :func:`_write_plain` (bounds the text held in memory)
PLAIN_CHUNK = 1 << 16


def _write_plain(frame: Any, separator: str, out: IO[str]) -> bool:
    """Write ``frame``'s rows as ``to_csv(sep=separator, header=False, index=False,
    lineterminator="\\n", quoting=QUOTE_MINIMAL)`` writes them, byte for byte, when every value is
    plain text that needs no quoting: integer and bool columns (their ``str``, as pandas writes
    them) and text columns of non-empty ``str`` values holding no separator, quote or line break.
    Returns False, having written nothing, for any other frame (floats, missing values, dates,
    categories, lists, a value to be quoted, ...): the caller writes it with ``to_csv``.

    Rows are formatted with one ``%`` per row, ``PLAIN_CHUNK`` rows at a time, written as one string
    each: 2-3 times faster than ``to_csv`` (its csv writer quotes field by field, and writes each row
    to ``out`` on its own) on the MLflow scorer's ``row,prediction,file`` frames
    (bench/profile_mini_batch.py)."""
    rows, width = frame.shape
    if not rows or not width or separator in ('"', "\n", "\r", ""):
        return False
    numpy, pandas = sys.modules["numpy"], sys.modules["pandas"]
    specials = (separator, '"', "\n", "\r")
    columns = []
    for j in range(width):
        column = frame.iloc[:, j]
        dtype = column.dtype
        if isinstance(dtype, numpy.dtype) and dtype.kind in ("i", "u", "b"):
            columns.append(column.to_numpy())
        elif (isinstance(dtype, numpy.dtype) and dtype.kind == "O") or isinstance(dtype, pandas.StringDtype):
            values = column.to_numpy(dtype=object)
            try:
                distinct = set(values.tolist())
            except TypeError:  # lists, dicts: not plain text
                return False
            for value in distinct:
                if type(value) is not str or not value or any(c in value for c in specials):
                    return False
            columns.append(values)
        else:  # floats (pandas' own formatting), dates, categories, nullable integers: to_csv
            return False
    line = separator.replace("%", "%%").join(["%s"] * width) + "\n"
    for start in range(0, rows, PLAIN_CHUNK):
        chunk = [values[start:start + PLAIN_CHUNK].tolist() for values in columns]
        out.write("".join([line % row for row in zip(*chunk)]))
    return True


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
