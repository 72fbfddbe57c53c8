"""Fixtures of the Azure-shapes tests: a deployment folder laid out as Azure's batch samples lay
theirs out (``cli/endpoints/batch/deploy-models/<sample>/{model,code,environment}``), with a
custom (pickled) heart classifier trained here from ``examples/heart/train/heart.csv``."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from conftest import HEART_TRAIN, HEART_UNLABELED

def conda_yaml() -> str:
    """Azure's sample environment file (heart-classifier-mlflow/environment/conda.yaml) in its
    shape — conda-only lines included, as users bring them — pinning the versions this machine's
    server has (the pickled model is unpickled there)."""
    import pandas
    import pyarrow
    import sklearn

    return f"""\
name: heart-classifier-batch
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
    - pandas=={pandas.__version__}
    - pyarrow=={pyarrow.__version__}
    - scikit-learn=={sklearn.__version__}
"""


def train_heart_model():
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.read_csv(HEART_TRAIN)
    features, target = frame.drop(columns=["target"]), frame["target"]
    prep = ColumnTransformer([("thal", OneHotEncoder(handle_unknown="ignore"), ["thal"])], remainder="passthrough")
    return Pipeline([("prep", prep), ("clf", GradientBoostingClassifier(random_state=0, n_estimators=30))]).fit(
        features, target)


@pytest.fixture(scope="session")
def pickled_heart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<sample>/model/model.pkl``: a custom model registered from a folder named ``model``."""
    folder = tmp_path_factory.mktemp("heart-classifier-custom") / "model"
    folder.mkdir()
    with open(folder / "model.pkl", "wb") as out:
        pickle.dump(train_heart_model(), out)
    return folder


@pytest.fixture(scope="session")
def heart_expected(pickled_heart: Path) -> dict[str, list[int]]:
    """The model's own predict on each unlabeled file."""
    import pandas as pd

    with open(pickled_heart / "model.pkl", "rb") as handle:
        model = pickle.load(handle)
    return {csv.stem: [int(p) for p in model.predict(pd.read_csv(csv))] for csv in sorted(HEART_UNLABELED.glob("*.csv"))}

