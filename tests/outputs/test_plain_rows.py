"""A part's rows written without ``to_csv`` (``outputs/rows.py _write_plain``) are the bytes
``to_csv`` writes, for every frame the quick path takes, and every other frame still goes through
``to_csv`` (floats, missing values, values to be quoted, ...). The reference is pandas' own
``to_csv`` with the options Azure's append_row format uses, not the code under test."""

from __future__ import annotations

import csv
import random
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchpoint.outputs import writer_for
from batchpoint.outputs.rows import PLAIN_CHUNK, mark_mlflow_rows
from batchpoint.scoring.scorers import file_rows


def _reference(frame: pd.DataFrame, sep: str) -> bytes:
    return frame.to_csv(None, sep=sep, header=False, index=False, lineterminator="\n",
                        quoting=csv.QUOTE_MINIMAL).encode("utf-8")


def _part(tmp_path: Path, frame: pd.DataFrame) -> bytes:
    writer = writer_for("append_row")
    rows = writer.write_part(tmp_path, "00000001-0000", frame)
    assert rows == len(frame)
    return (tmp_path / writer.part_name("00000001-0000")).read_bytes()


def _words(rng: random.Random, n: int, alphabet: str) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def _frames() -> list[pd.DataFrame]:
    rng = random.Random(7)
    n = 300
    plain = string.ascii_letters + string.digits + "._-%{}éü€"
    return [
        pd.DataFrame({"row": range(n), "prediction": np.arange(n) % 3, "file": "heart-0001.csv"}),
        pd.DataFrame({"a": np.arange(n, dtype="uint8"), "b": np.arange(n) % 2 == 0, "c": _words(rng, n, plain)}),
        pd.DataFrame({"a": np.array([-2**63, 2**63 - 1, 0] * 10), "b": np.arange(30, dtype="int16")}),
        pd.DataFrame({"c": pd.Series(_words(rng, n, plain), dtype="string")}),
        pd.DataFrame({"c": np.array(_words(rng, n, plain), dtype=object)}),
        # each of these holds something the quick path must leave to to_csv
        pd.DataFrame({"c": _words(rng, n, plain + ", \"\n\r")}),
        pd.DataFrame({"c": ["", "x", "y"], "n": [1, 2, 3]}),
        pd.DataFrame({"c": [None, "x", "y"], "n": [1, 2, 3]}),
        pd.DataFrame({"c": pd.Series(["a", None], dtype="string")}),
        pd.DataFrame({"f": [0.1, 1e-5, 1e16, float("nan")], "n": [1, 2, 3, 4]}),
        pd.DataFrame({"n": pd.Series([1, None, 3], dtype="Int64")}),
        pd.DataFrame({"k": pd.Categorical(["a", "b", "a"])}),
        pd.DataFrame({"l": [[1, 2], [3], []]}),
        pd.DataFrame({"o": [1, "x", True]}),
        pd.DataFrame({"t": pd.to_datetime(["2026-12-07", "2026-12-08"])}),
        pd.DataFrame({"a": [], "b": []}),
    ]


@pytest.mark.parametrize("mlflow", [True, False], ids=["comma (MLflow)", "space (scoring script)"])
def test_a_part_holds_the_bytes_to_csv_writes(tmp_path: Path, mlflow: bool) -> None:
    for i, frame in enumerate(_frames()):
        folder = tmp_path / str(i)
        expected = _reference(frame, "," if mlflow else " ")
        written = _part(folder, mark_mlflow_rows(frame.copy()) if mlflow else frame.copy())
        assert written == expected, f"frame {i}:\n{frame.head()}"


def test_more_rows_than_a_chunk_keep_their_order(tmp_path: Path) -> None:
    n = PLAIN_CHUNK * 2 + 17
    frame = mark_mlflow_rows(pd.DataFrame({"row": range(n), "prediction": np.arange(n) % 5, "file": "f.csv"}))
    assert _part(tmp_path, frame) == _reference(frame, ",")


def test_the_mlflow_scorers_rows_are_written_without_to_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the heart bench's shape: integer predictions, plain file names; formatted row by row, not by
    # to_csv's csv writer (2-3 times slower: bench/profile_mini_batch.py)
    frame = mark_mlflow_rows(pd.concat([file_rows("/data/a.csv", np.array([1, 0])),
                                        file_rows("/data/b-2.csv", np.array([1]))], ignore_index=True))

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("to_csv was used")

    monkeypatch.setattr(pd.DataFrame, "to_csv", refused)
    assert _part(tmp_path, frame) == b"0,1,a.csv\n1,0,a.csv\n0,1,b-2.csv\n"


def test_a_file_name_with_a_comma_is_still_quoted(tmp_path: Path) -> None:
    frame = mark_mlflow_rows(file_rows("/data/a,b.csv", np.array([1, 0])))
    assert _part(tmp_path, frame) == b'0,1,"a,b.csv"\n1,0,"a,b.csv"\n'
