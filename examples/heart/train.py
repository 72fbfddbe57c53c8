"""Train the heart condition classifier and save it as an MLflow model.

    python examples/heart/train.py [--data train/heart.csv] [--out model]

The model is a scikit-learn pipeline: ``thal`` (text: normal, fixed, reversible, a few stray
codes) is one-hot encoded, the other columns pass through, and a GradientBoostingClassifier
predicts ``target`` (1: heart condition). It is saved with ``mlflow.sklearn.save_model``
(cloudpickle), so a batch deployment can serve it with no scoring script. The defaults are the
files beside this script.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "train" / "heart.csv"
DEFAULT_OUT = HERE / "model"


def train(data: Path = DEFAULT_DATA, out: Path = DEFAULT_OUT) -> tuple[Path, float]:
    """Fit the pipeline on ``data`` and save it to ``out`` (replaced if present).

    Returns the model folder and the accuracy on a held-out fifth of the rows (the saved model
    itself is fitted on every row)."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    def pipeline() -> Pipeline:
        prep = ColumnTransformer([("thal", OneHotEncoder(handle_unknown="ignore"), ["thal"])], remainder="passthrough")
        return Pipeline([("prep", prep), ("clf", GradientBoostingClassifier(random_state=0))])

    frame = pd.read_csv(data)
    features, target = frame.drop(columns=["target"]), frame["target"]
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.2, random_state=0,
                                                        stratify=target)
    accuracy = float(pipeline().fit(x_train, y_train).score(x_test, y_test))
    model = pipeline().fit(features, target)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent)) / out.name
    try:
        mlflow.sklearn.save_model(model, str(staging), serialization_format="cloudpickle")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return out, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"training CSV (default: {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder to write (default: {DEFAULT_OUT})")
    args = parser.parse_args()
    out, accuracy = train(args.data, args.out)
    print(f"trained on {args.data}: held-out accuracy {accuracy:.3f}; MLflow model saved to {out}")


if __name__ == "__main__":
    main()
