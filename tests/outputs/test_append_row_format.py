"""``append_row`` lines byte for byte as Azure ML writes what ``run()`` returns.

The expected texts are written out by hand from what Azure documents:

* a DataFrame: one line per row, no header, no index, columns separated by a space — Azure's
  imagenet batch sample reads ``predictions.csv`` with ``pd.read_csv(..., header=None,
  names=['file', 'class', 'probabilities'], sep=' ')`` and "although pandas DataFrame may contain
  column names, they are not included in the output file" (How to use batch scoring scripts);
  a value holding the separator is quoted (pandas' ``to_csv`` minimal quoting), so that read works;
* a list: each element on its own line, as the element's text ("complex data types ... will be
  transformed to string"); the custom-outputs-parquet sample returns ``mini_batch`` (file paths);
* the MLflow no-code deployment: ``row,prediction,file`` (comma separated), as before.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest

from batchpoint.scoring.output import count_rows, mark_mlflow_rows, write_rows


def _written(result: object) -> tuple[str, int]:
    out = io.StringIO()
    rows = write_rows(result, out)
    return out.getvalue(), rows


def test_dataframe_rows_are_space_separated_without_header_or_index() -> None:
    # the imagenet sample's run(): pd.DataFrame(results) of {"file", "class", "probabilities"}
    frame = pd.DataFrame([
        {"file": "n02088094_Afghan_hound.JPEG", "class": 161, "probabilities": 0.994745},
        {"file": "n02088238_basset.JPEG", "class": 162, "probabilities": 0.999397},
    ], index=[7, 9])
    text, rows = _written(frame)
    assert text == "n02088094_Afghan_hound.JPEG 161 0.994745\nn02088238_basset.JPEG 162 0.999397\n"
    assert rows == 2
    # and Azure's own way of reading it back gives the frame again
    back = pd.read_csv(io.StringIO(text), header=None, names=["file", "class", "probabilities"], sep=" ")
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))


def test_a_value_with_a_space_or_quote_is_quoted_so_the_documented_read_still_works() -> None:
    frame = pd.DataFrame({"file": ["my scan.png", 'say "hi".txt', "plain.png"], "label": ["golden retriever", "b", "c"]})
    text, _ = _written(frame)
    assert text == '"my scan.png" "golden retriever"\n"say ""hi"".txt" b\nplain.png c\n'
    back = pd.read_csv(io.StringIO(text), header=None, names=["file", "label"], sep=" ")
    pd.testing.assert_frame_equal(back, frame)


def test_list_elements_are_one_line_each_as_their_text() -> None:
    # custom-outputs-parquet returns mini_batch: the paths it processed
    assert _written(["/mnt/in/heart-unlabeled-0.csv", "/mnt/in/heart-unlabeled-1.csv"]) == (
        "/mnt/in/heart-unlabeled-0.csv\n/mnt/in/heart-unlabeled-1.csv\n", 2)
    # numbers and nested lists come out as Python writes them (Azure: "transformed to string")
    assert _written([0, 1.5, ["heart-unlabeled-0.csv", 1], ("a b", None)]) == (
        "0\n1.5\n['heart-unlabeled-0.csv', 1]\n('a b', None)\n", 4)
    assert _written("one line") == ("one line\n", 1)
    assert _written(None) == ("", 0)


def test_a_series_is_a_one_column_frame() -> None:
    assert _written(pd.Series([1, 0, 1], name="prediction")) == ("1\n0\n1\n", 3)


def test_the_mlflow_no_code_output_keeps_row_prediction_file() -> None:
    frame = mark_mlflow_rows(pd.DataFrame({"row": [0, 1], "prediction": [1, 0], "file": ["heart-unlabeled-0.csv"] * 2}))
    assert _written(frame) == ("0,1,heart-unlabeled-0.csv\n1,0,heart-unlabeled-0.csv\n", 2)


@pytest.mark.parametrize(("result", "count"), [(["a", "b", "c"], 3), (pd.DataFrame({"x": [1, 2]}), 2), (None, 0),
                                               ("a", 1), (iter(["a", "b"]), 2)])
def test_summary_only_counts_what_run_returned(result: object, count: int) -> None:
    assert count_rows(result) == count
