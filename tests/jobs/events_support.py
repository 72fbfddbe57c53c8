"""Shared by the job-event tests: a scoring-script endpoint whose jobs can be held Running, and a
bounded reader of the server-sent event stream (``GET /jobs/<name>/events/stream``) over httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from conftest import HEART_UNLABELED
from fixtures.flows import write_script

HEART_FILES = 4  # heart-unlabeled-0..3.csv; mini_batch_size 1: one mini-batch per file
LIFE = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]

#: Holds the mini-batch of HOLD_ON until the file HOLD_UNTIL exists (at most 60 s), so a test can
#: keep a job Running; FAIL_ALL makes every mini-batch raise.
SCORE_PY = """
import glob
import os
import time

import mlflow.pyfunc
import pandas as pd

model = None


def init():
    global model
    model = mlflow.pyfunc.load_model(glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/")[0])  # Azure's layout


def run(mini_batch):
    if os.environ.get("FAIL_ALL"):
        raise ValueError("cannot score: the rows are corrupt")
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == os.environ.get("HOLD_ON") and os.environ.get("HOLD_UNTIL"):
            for _ in range(600):
                if os.path.exists(os.environ["HOLD_UNTIL"]):
                    break
                time.sleep(0.1)
        time.sleep(float(os.environ.get("SLEEP_S", "0")))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
    return pd.concat(frames, ignore_index=True)
"""

DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "quick": {},
    "held": {"environment_variables": {"HOLD_ON": "heart-unlabeled-3.csv"}},
    "slow": {"environment_variables": {"SLEEP_S": "1.5"}},
    "failing": {"environment_variables": {"FAIL_ALL": "1"}, "error_threshold": 0},
}


def make_event_endpoint(client: Any, endpoint: str, model_dir: Path, code_dir: Path, **only: Any) -> None:
    """Endpoint ``endpoint`` with the deployments of DEPLOYMENTS (or ``only``: name → settings), one
    worker, one file per mini-batch, no retries; ``quick`` (or the first) is the default."""
    client.models.create_or_update(Model(name="heart-classifier", type="mlflow_model", path=str(model_dir)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    code = write_script(code_dir, SCORE_PY)
    for i, (name, settings) in enumerate((only or DEPLOYMENTS).items()):
        spec = {"instance_count": 1, "max_concurrency_per_instance": 1, "mini_batch_size": 1, "error_threshold": -1,
                "retry_settings": {"max_retries": 0, "timeout": 120}, **settings}
        client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=endpoint, model="azureml:heart-classifier@latest",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"), **spec),
            set_default=i == 0).result()


def invoke(client: Any, endpoint: str, deployment: str, **overrides: Any) -> str:
    return client.batch_endpoints.invoke(endpoint_name=endpoint, deployment_name=deployment,
                                         input=Input(type="uri_folder", path=str(HEART_UNLABELED)), **overrides).name


@dataclass
class Received:
    """What one stream connection delivered: each event with its arrival time, and the lines."""

    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    closed_at: float | None = None


def sse_lines(response: httpx.Response, max_lines: int = 5000) -> Iterator[str]:
    for count, line in enumerate(response.iter_lines()):
        assert count < max_lines, f"the event stream sent more than {max_lines} lines"
        yield line


def read_stream(response: httpx.Response, on_event: Any = None) -> Received:
    """Read ``response`` (an open event stream) until the server closes it; ``on_event(event,
    received)`` is called as each event arrives."""
    got = Received()
    data: list[str] = []
    for line in sse_lines(response):
        if line.startswith(":"):
            got.comments.append(line)
        elif line.startswith("id:"):
            got.ids.append(int(line[3:].strip()))
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            event = json.loads("\n".join(data))
            data = []
            got.events.append(event)
            got.arrived.append(time.monotonic())
            if on_event is not None:
                on_event(event, got)
    got.closed_at = time.monotonic()
    return got


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in events if e["type"] == "status"]


def assert_numbered(events: list[dict[str, Any]], first: int = 1) -> None:
    """seq strictly increasing by one, from ``first``; every event of version 1."""
    assert [e["seq"] for e in events] == list(range(first, first + len(events))), [e["seq"] for e in events]
    assert all(e["v"] == 1 for e in events), events
