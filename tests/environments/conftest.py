"""Fixtures of the environment tests: a local package index on 127.0.0.1 (no internet), a server
whose ``environments.index_url`` points at it, and an old MLflow model trained in its own
environment (scikit-learn 1.1.3 + xgboost 1.7.6: versions the server's .venv lacks).

The wheels come from ``scripts/test.sh`` (``tests/fixtures/local_index_fetch.py``, at install time,
under ``.cache/env-index``); uv's cache is ``.cache/uv``, so a second run builds from a warm cache.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_TRAIN, HEART_UNLABELED, UV_CACHE, ServerHandle, index_env, start_server, stop_server
from fixtures.local_index import LocalIndex
#: what the old model pins (its requirements.txt, as mlflow 2.10 writes it)
OLD_PINS = ["mlflow==2.10.2", "scikit-learn==1.1.3", "xgboost==1.7.6"]

TRAIN_PY = r'''
import json, sys
from pathlib import Path
import pandas as pd, mlflow.sklearn, mlflow.pyfunc
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from xgboost import XGBClassifier

train, out, unlabeled, pins = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
frame = pd.read_csv(train)
X, y = frame.drop(columns=["target"]), frame["target"]
prep = ColumnTransformer([("thal", OneHotEncoder(handle_unknown="ignore"), ["thal"])], remainder="passthrough")
model = Pipeline([("prep", prep), ("clf", XGBClassifier(n_estimators=30, max_depth=3, random_state=0))]).fit(X, y)
mlflow.sklearn.save_model(model, out, serialization_format="cloudpickle", pip_requirements=pins)
loaded = mlflow.pyfunc.load_model(out)
expected = {}
for csv in sorted(Path(unlabeled).glob("*.csv")):
    for row, pred in enumerate(loaded.predict(pd.read_csv(csv))):
        expected[f"{csv.name}:{row}"] = int(pred)
import sklearn, xgboost, numpy
print(json.dumps({"expected": expected, "versions": {"sklearn": sklearn.__version__, "xgboost": xgboost.__version__,
                                                     "numpy": numpy.__version__}}))
'''


@pytest.fixture(scope="session")
def env_server(tmp_path_factory: pytest.TempPathFactory, local_index: LocalIndex) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("bp-env-home"), index_env(local_index))
    yield handle
    stop_server(handle)


@pytest.fixture(scope="session")
def env_client(env_server: ServerHandle):
    from batchpoint import MLClient

    client = MLClient(endpoint=env_server.url, home=env_server.home)
    yield client
    client.close()


@pytest.fixture(scope="session")
def old_model(tmp_path_factory: pytest.TempPathFactory, local_index: LocalIndex,
              env_server: ServerHandle) -> dict[str, Any]:
    """An sklearn Pipeline around XGBClassifier trained and saved as an MLflow model *in an
    environment built from the registry* (its own, not the server's), with the predictions of that
    environment's own ``predict`` on the unlabeled heart files. The environment is built with the
    server's settings (its home, index and uv cache), as a user would on that machine: the model's
    requirements name the same packages, so the server's first job of it finds that build."""
    from batchpoint.environments import build_environment
    from batchpoint.settings import Settings

    settings = Settings(home=env_server.home, environments={"index_url": local_index.url,
                                                            "uv_cache_dir": str(UV_CACHE)})
    python = build_environment(settings, ["scikit-learn==1.1.3", "xgboost==1.7.6", "mlflow-skinny==2.10.2"],
                               log=env_server.home / "train-build.log")
    out = tmp_path_factory.mktemp("old-model") / "heart-xgb"
    proc = subprocess.run([python, "-c", TRAIN_PY, str(HEART_TRAIN), str(out), str(HEART_UNLABELED),
                           json.dumps(OLD_PINS)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["versions"]["sklearn"] == "1.1.3" and result["versions"]["xgboost"] == "1.7.6", result["versions"]
    return {"path": out, "expected": result["expected"], "python": python,
            "build_log": (env_server.home / "train-build.log").read_text()}


def run_cli(server: ServerHandle, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real ``batchpoint`` command against ``server``."""
    import shutil
    import sys

    exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                          env={**server.env, "BATCHPOINT_SERVER_URL": server.url})
    if check:
        assert proc.returncode == 0, f"batchpoint {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def job_log(client: Any, server: ServerHandle, name: str, log_name: str = "environment.log") -> str:
    with server.rest() as rest:
        listing = rest.get(f"/jobs/{name}/logs").json()["logs"]
        assert log_name in [entry["name"] for entry in listing], listing
        return rest.get(f"/jobs/{name}/logs/{log_name}").text


def phases(client: Any, name: str) -> list[dict[str, Any]]:
    return [e.data for e in client.jobs.events(name) if e.type == "phase" and e.data.get("phase") ==
            "building environment"]


def statuses(client: Any, name: str) -> list[str]:
    return [e.status for e in client.jobs.events(name) if e.type == "status"]
