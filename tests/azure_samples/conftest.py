"""Fixtures of the Azure-samples tests: a server whose environments build from the local package
index, and the heart samples' two models trained *in an environment built from that index*
(scikit-learn 1.1.3 + xgboost 1.7.6 + mlflow-skinny 2.10.2, the kind of model Azure's
``heart-classifier-mlflow`` and ``custom-outputs-parquet`` ship: an sklearn Pipeline around an
XGBClassifier, saved as an MLflow model and as a plain ``model.pkl``), with that environment's own
predictions on the unlabeled heart files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import HEART_TRAIN, HEART_UNLABELED, UV_CACHE, ServerHandle, index_env, start_server, stop_server
from fixtures.local_index import LocalIndex

#: what the deployments' environments pin, in Azure's conda-file shape (the index's versions:
#: tests/fixtures/local_index_fetch.py)
PINS = ["mlflow-skinny==2.10.2", "cloudpickle==3.0.0", "scikit-learn==1.1.3", "xgboost==1.7.6"]

TRAIN_PY = r'''
import json, pickle, sys
from pathlib import Path
import pandas as pd, mlflow.sklearn, mlflow.pyfunc
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

train, out, unlabeled, pins = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
frame = pd.read_csv(train)
X, y = frame.drop(columns=["target"]), frame["target"]
encoding = ColumnTransformer([("cat_encoding", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                               ["thal"])], remainder="passthrough")
model = Pipeline([("encoding", encoding), ("model", XGBClassifier(n_estimators=30, max_depth=3, random_state=0))])
model.fit(X, y)
mlflow.sklearn.save_model(model, str(out / "mlflow-model"), serialization_format="cloudpickle", pip_requirements=pins)
(out / "pickled").mkdir()
with open(out / "pickled" / "model.pkl", "wb") as f:
    pickle.dump(model, f)
expected = {}
for csv in sorted(Path(unlabeled).glob("*.csv")):
    expected[csv.name] = [int(p) for p in model.predict(pd.read_csv(csv))]
print(json.dumps(expected))
'''


@pytest.fixture(scope="session")
def samples_server(tmp_path_factory: pytest.TempPathFactory, local_index: LocalIndex) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("bp-samples-home"), index_env(local_index))
    yield handle
    stop_server(handle)


@pytest.fixture(scope="session")
def heart_models(tmp_path_factory: pytest.TempPathFactory, local_index: LocalIndex,
                 samples_server: ServerHandle) -> dict[str, Any]:
    """``mlflow``: an MLflow model folder (MLmodel, model.pkl, requirements.txt pinning :data:`PINS`
    with ``mlflow``, as mlflow writes it); ``pickled``: a folder holding ``model.pkl``;
    ``expected``: {file name: the model's own predictions, row by row}."""
    from batchpoint.environments import build_environment
    from batchpoint.settings import Settings

    settings = Settings(home=samples_server.home, environments={"index_url": local_index.url,
                                                                "uv_cache_dir": str(UV_CACHE)})
    python = build_environment(settings, PINS + ["pyarrow"], log=samples_server.home / "train-build.log")
    out = tmp_path_factory.mktemp("heart-models")
    pins = ["mlflow==2.10.2"] + PINS[1:]
    proc = subprocess.run([python, "-c", TRAIN_PY, str(HEART_TRAIN), str(out), str(HEART_UNLABELED),
                           json.dumps(pins)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"mlflow": out / "mlflow-model", "pickled": out / "pickled",
            "expected": json.loads(proc.stdout.strip().splitlines()[-1])}
