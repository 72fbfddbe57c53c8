"""Turn what a scorer returned into ``append_row`` lines (CSV, no header)."""

from __future__ import annotations

import csv
import io
from typing import IO, Any

import pandas as pd


def write_rows(result: Any, out: IO[str]) -> int:
    """Write ``result`` (DataFrame, Series, list, tuple or None) as rows; return the row count."""
    if result is None:
        return 0
    if isinstance(result, pd.Series):
        result = result.to_frame()
    if isinstance(result, pd.DataFrame):
        result.to_csv(out, header=False, index=False, lineterminator="\n")
        return len(result)
    if isinstance(result, (str, bytes)):
        result = [result]
    writer = csv.writer(out, lineterminator="\n")
    count = 0
    for item in result:
        if isinstance(item, (list, tuple)):
            writer.writerow(item)
        else:
            out.write(f"{item.decode() if isinstance(item, bytes) else item}\n")
        count += 1
    return count


def count_rows(result: Any) -> int:
    if result is None:
        return 0
    if isinstance(result, (str, bytes)):
        return 1
    try:
        return len(result)
    except TypeError:
        return write_rows(result, io.StringIO())
