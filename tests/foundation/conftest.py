"""Fixtures of the Foundation acceptance tests: resources registered once per session through the
SDK against the session server, and small helpers shared by the modules.

Each module that needs its own endpoint makes it (module scope); the heart model and the heart data
uploaded to the default data store are shared, since they never change.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HEART_UNLABELED, expected_predictions
from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, Data, Model

HEART_FILE = HEART_UNLABELED / "heart-unlabeled-0.csv"
HEART_FILE_ROWS = 100


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_script(folder: Path, body: str, name: str = "score.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body).lstrip())
    return folder


def jobs_of(ml_client: Any, endpoint: str) -> set[str]:
    return {j.name for j in ml_client.jobs.list(endpoint_name=endpoint)}


def wait_until(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")


def expected_rows(model_dir: Path, folder: Path = HEART_UNLABELED) -> list[tuple[int, int, str]]:
    """(row, prediction, file) in the order append_row writes them: files sorted, rows ascending."""
    expected = expected_predictions(model_dir, folder)
    return [(row, pred, name) for (name, row), pred in sorted(expected.items())]


def predictions_of(path: Path, sep: str = ",") -> list[tuple[int, int, str]]:
    """``row,prediction,file`` rows (an MLflow deployment's); ``sep=" "`` for a scoring script's
    DataFrame of those columns (Azure writes a script's DataFrame space-separated)."""
    import pandas as pd

    frame = pd.read_csv(path, names=["row", "prediction", "file"], sep=sep)
    return [(int(r), int(p), str(f)) for r, p, f in frame.itertuples(index=False)]


@dataclass
class HeartData:
    folder_asset: Any  # Data: uri_folder uploaded from HEART_UNLABELED
    file_asset: Any  # Data: uri_file uploaded from heart-unlabeled-0.csv
    folder_uri: str  # azureml://datastores/<ds>/paths/<p> of the uploaded folder
    folder_path: str  # <p>
    file_uri: str
    file_path: str
    datastore: Any  # the default Datastore
    datastore_root: Path  # its folder on the server's disk


@pytest.fixture(scope="session")
def heart_data(ml_client: Any, server: Any) -> HeartData:
    """The heart folder and one file uploaded once, through the SDK, as data assets."""
    folder = ml_client.data.create_or_update(
        Data(name=unique("heart-folder"), type="uri_folder", path=str(HEART_UNLABELED),
             description="heart unlabeled, uploaded by the foundation tests"))
    single = ml_client.data.create_or_update(Data(name=unique("heart-file"), type="uri_file", path=str(HEART_FILE)))
    default = ml_client.datastores.get_default()
    prefix = f"azureml://datastores/{default.name}/paths/"
    assert folder.path.startswith(prefix), folder.path
    assert single.path.startswith(prefix), single.path
    return HeartData(folder, single, folder.path, folder.path[len(prefix):], single.path, single.path[len(prefix):],
                     default, Path(default.path))


@pytest.fixture(scope="session")
def heart_model(ml_client: Any, heart_model_dir: Path) -> Any:
    return ml_client.models.create_or_update(Model(name="heart-classifier", type="mlflow_model", path=str(heart_model_dir)))


@pytest.fixture(scope="session")
def batch_cluster(ml_client: Any) -> Any:
    return ml_client.compute.begin_create_or_update(
        AmlCompute(name="batch-cluster", type="amlcompute", min_instances=0, max_instances=5)).result()


def make_endpoint(ml_client: Any, name: str, **deployment: Any) -> str:
    """An endpoint with one default MLflow deployment ``main`` (settings as keyword arguments)."""
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=name, description="foundation tests")).result()
    spec = {"name": "main", "endpoint_name": name, "model": "azureml:heart-classifier@latest",
            "compute": "azureml:batch-cluster", "mini_batch_size": 10, **deployment}
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(**spec), set_default=True).result()
    return name

