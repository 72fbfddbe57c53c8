"""Scorers run inside worker processes: ``init()`` once, then ``run(files)`` per mini-batch.

* :class:`MlflowScorer` — an MLflow model with no code: each CSV/Parquet file or image is read
  (``scoring/readers.py``),
  ``pyfunc.predict`` is called, and rows ``row,prediction,file`` come back (as Azure writes them).
* :class:`ScriptScorer` — a user's scoring script with ``init()`` and ``run(mini_batch)``;
  ``AZUREML_MODEL_DIR`` is the model version's folder, with the registered folder (or file) inside
  it under its own name, as on Azure; ``run`` returns a list or a DataFrame, written as Azure
  writes them (``scoring/output.py``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from batchpoint.exceptions import UserCodeError
from batchpoint.scoring.output import mark_mlflow_rows
from batchpoint.scoring.readers import image_for_model, read_input


class MlflowScorer:
    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.model: Any = None

    def init(self) -> None:
        from batchpoint.scoring.mlflow_load import load_pyfunc

        self.model = load_pyfunc(self.model_dir)

    def run(self, files: list[str]) -> pd.DataFrame:
        frames = []
        for path in files:
            data = read_input(path)
            if not isinstance(data, pd.DataFrame):  # an image: shaped for the model's tensor signature
                data = image_for_model(data, self.model.metadata.get_input_schema(), os.path.basename(path))
            frames.append(file_rows(path, self.model.predict(data)))
        result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["row", "prediction", "file"])
        return mark_mlflow_rows(result)


def file_rows(path: str, predictions: Any) -> pd.DataFrame:
    """One file's ``row,prediction,file`` frame (built from a dict in one go: an ``insert`` of the
    ``row`` column afterwards cost a copy)."""
    column = _as_column(predictions)
    frame = pd.DataFrame({"row": range(len(column)), "prediction": column})
    frame["file"] = os.path.basename(path)
    return frame


def _as_column(predictions: Any) -> Any:
    if isinstance(predictions, pd.DataFrame):
        return predictions.iloc[:, 0].to_numpy() if predictions.shape[1] == 1 else predictions.to_numpy().tolist()
    if isinstance(predictions, pd.Series):
        return predictions.to_numpy()
    if hasattr(predictions, "ndim"):  # a 1-D array is a column as it is (no Python list of boxed values)
        return predictions if predictions.ndim == 1 else predictions.tolist()
    return list(predictions)


class ScriptScorer:
    def __init__(self, code_dir: str, scoring_script: str, model_dir: str | None) -> None:
        self.code_dir = code_dir
        self.script = scoring_script
        self.model_dir = model_dir
        self.module: Any = None

    def init(self) -> None:
        path = Path(self.code_dir) / self.script
        if not path.is_file():
            raise UserCodeError(f"scoring script '{self.script}' was not found in the deployment's code folder")
        if self.model_dir:
            os.environ["AZUREML_MODEL_DIR"] = self.model_dir
        sys.path.insert(0, self.code_dir)
        spec = importlib.util.spec_from_file_location(f"batchpoint_user_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        missing = [fn for fn in ("init", "run") if not callable(getattr(module, fn, None))]
        if missing:
            raise UserCodeError(
                f"scoring script '{self.script}' must define init() and run(mini_batch); missing: {', '.join(missing)}"
            )
        self.module = module
        module.init()

    def run(self, files: list[str]) -> Any:
        return self.module.run(list(files))


def make_scorer(config: dict[str, Any]) -> MlflowScorer | ScriptScorer:
    if config.get("scoring_script"):
        return ScriptScorer(config["code_dir"], config["scoring_script"],
                            config.get("azureml_model_dir") or config.get("model_dir"))
    return MlflowScorer(config["model_dir"])
