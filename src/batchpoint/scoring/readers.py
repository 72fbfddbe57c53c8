"""Read a data file into a DataFrame by its extension (MLflow no-code deployments)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from batchpoint.exceptions import ValidationError

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
}


def read_table(path: str) -> pd.DataFrame:
    suffix = Path(path).suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise ValidationError(
            f"file '{Path(path).name}' has type '{suffix or '(none)'}', which an MLflow deployment without "
            f"a scoring script cannot read; supported: {', '.join(sorted(READERS))}. Add a scoring script "
            "(code_configuration) to read other formats."
        )
    return reader(path)
