"""A cold worker loads an MLflow model without scanning every installed distribution and without
the garbage collector's passes over the imports (issue 24 §4), and still warns about the same requirement mismatches as ``mlflow.pyfunc.load_model`` does.

Each check runs in a fresh interpreter: a cold worker's (fenced, or a Ray actor), where MLflow has
built nothing yet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

#: the model's requirements: one satisfied, one of another version, one not installed
REQUIREMENTS = "numpy\nscikit-learn==0.1\nnonexistent-batchpoint-test-pkg==1.0\n"

PROBE = r"""
import gc, json, logging, sys
import importlib_metadata
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
calls = []
real = importlib_metadata.packages_distributions
def counted():
    calls.append(1)
    return real()
importlib_metadata.packages_distributions = counted
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
import mlflow  # configures its loggers (the package map is built later, by load_model)
logging.getLogger("mlflow").addHandler(Keep())
model_dir, how = sys.argv[1], sys.argv[2]
if how == "worker":
    from batchpoint.scoring.scorers import MlflowScorer
    scorer = MlflowScorer(model_dir)
    gc.collect()  # a fresh count: no collection is due at the start
    collections.clear()
    scorer.init()
    model = scorer.model
else:
    gc.collect()
    collections.clear()
    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(model_dir)
during_load = len(collections)
from mlflow.utils import requirements_utils
import pandas as pd
prediction = model.predict(pd.read_csv(sys.argv[3]).head(5))
print(json.dumps({"scans": len(calls), "warnings": [r for r in records if "mismatches" in r],
                  "map_left_unset": requirements_utils._MODULES_TO_PACKAGES is None,
                  "collections_during_load": during_load, "gc_enabled_after": gc.isenabled(),
                  "predictions": [int(p) for p in prediction]}))
"""


def _probe(model_dir: Path, how: str, data: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(model_dir), how, str(data)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cold_worker_loads_mlflow_model_without_the_distribution_scan(heart_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(heart_model_dir, model)
    (model / "requirements.txt").write_text(REQUIREMENTS)
    data = Path(__file__).resolve().parents[2] / "examples" / "heart" / "data" / "heart-unlabeled-0.csv"
    mlflow_own = _probe(model, "mlflow", data)
    worker = _probe(model, "worker", data)
    assert mlflow_own["scans"] >= 1  # what MLflow does by itself: the scan this cuts
    assert worker["scans"] == 0
    assert worker["warnings"] == mlflow_own["warnings"] and len(worker["warnings"]) == 1
    assert "scikit-learn (current:" in worker["warnings"][0]
    assert "nonexistent-batchpoint-test-pkg (current: uninstalled" in worker["warnings"][0]
    assert worker["map_left_unset"]  # whatever needs the whole map later builds it as before
    assert worker["predictions"] == mlflow_own["predictions"]
    # the load (scikit-learn's imports, the unpickling) runs without the garbage collector's passes,
    # which is on again afterwards (one collection may follow at once, when it is switched back on)
    assert mlflow_own["collections_during_load"] > 10, mlflow_own
    assert worker["collections_during_load"] <= 1 and worker["gc_enabled_after"], worker
