"""Read a data file into a DataFrame by its extension (MLflow no-code deployments).

A file that cannot be read — a type no reader knows, a file the reader cannot parse — raises
:class:`FileReadError`, a failure of kind ``input`` (the file's, not the model's or the platform's)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from batchpoint.exceptions import InputError

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
}


class FileReadError(InputError):
    """An input file could not be read or parsed (failure kind ``input``)."""

    code = "file_read_error"
    failure_kind = "input"


def read_table(path: str) -> pd.DataFrame:
    name, suffix = Path(path).name, Path(path).suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise FileReadError(
            f"file '{name}' has type '{suffix or '(none)'}', which an MLflow deployment without "
            f"a scoring script cannot read; supported: {', '.join(sorted(READERS))}. Add a scoring script "
            "(code_configuration) to read other formats."
        )
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for a bad file
        raise FileReadError(f"file '{name}' could not be read as {suffix.lstrip('.')}: "
                            f"{type(exc).__name__}: {str(exc)[:500]}; fix or remove the file") from exc
