"""Shared by the observability tests: an endpoint whose scoring script can be slowed, made to fail
on every file or on some, so a job's progress, failures and errors file can be watched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from conftest import HEART_UNLABELED
from foundation.conftest import write_script

HEART_FILES = 4  # heart-unlabeled-0..3.csv; mini_batch_size 1: one mini-batch per file
LIFE = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]

#: SLEEP_S slows each file; FAIL_ALL fails every mini-batch; FAIL_ON (comma-separated names) fails
#: those files only. The model is found under AZUREML_MODEL_DIR wherever its MLmodel is.
SCORE_PY = """
import os
import time
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

model = None


def init():
    global model
    root = Path(os.environ["AZUREML_MODEL_DIR"])
    found = root if (root / "MLmodel").exists() else next(root.rglob("MLmodel")).parent
    model = mlflow.pyfunc.load_model(str(found))


def check(name):
    if name in os.environ.get("FAIL_ON", "").split(","):
        raise KeyError(f"no column 'thal' in {name}")


def run(mini_batch):
    if os.environ.get("FAIL_ALL"):
        raise ValueError("cannot score: the rows are corrupt")
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        check(name)
        time.sleep(float(os.environ.get("SLEEP_S", "0")))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
    return pd.concat(frames, ignore_index=True)
"""


def make_endpoint(client: Any, endpoint: str, model_dir: Path, code_dir: Path, deployments: dict[str, dict]) -> None:
    """Endpoint ``endpoint`` with ``deployments`` (name → settings; the first is the default): one
    worker, one file per mini-batch, no retries, no error threshold unless a deployment sets one."""
    client.models.create_or_update(Model(name="heart-classifier", type="mlflow_model", path=str(model_dir)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    code = write_script(code_dir, SCORE_PY)
    for i, (name, settings) in enumerate(deployments.items()):
        spec = {"instance_count": 1, "max_concurrency_per_instance": 1, "mini_batch_size": 1, "error_threshold": -1,
                "retry_settings": {"max_retries": 0, "timeout": 120}, **settings}
        client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=endpoint, model="azureml:heart-classifier@latest",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"), **spec),
            set_default=i == 0).result()


def invoke(client: Any, endpoint: str, deployment: str, **overrides: Any) -> str:
    return client.batch_endpoints.invoke(endpoint_name=endpoint, deployment_name=deployment,
                                         input=Input(type="uri_folder", path=str(HEART_UNLABELED)), **overrides).name
