"""A server killed with SIGKILL in the middle of a job: a new server on the same home resumes the
job (its heartbeat went stale) from the mini-batches already finished, and it completes with every
row, in order."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, start_server, stop_server, wait_job
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from foundation.conftest import expected_rows, predictions_of, wait_until, write_script

SLOW_SCORE_PY = """
import os
import time

import mlflow.pyfunc
import pandas as pd

model = None


def init():
    global model
    model = mlflow.pyfunc.load_model(os.environ["AZUREML_MODEL_DIR"])


def run(mini_batch):
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.environ["ATTEMPTS_FILE"], "a") as out:
            out.write(name + "\\n")
        time.sleep(float(os.environ["SLEEP_S"]))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
    return pd.concat(frames, ignore_index=True)
"""


def test_job_resumes_after_the_server_is_killed(tmp_path: Path, heart_model_dir: Path) -> None:
    home = tmp_path / "home"
    attempts = tmp_path / "attempts.txt"
    code = write_script(tmp_path / "code", SLOW_SCORE_PY)
    first = start_server(home)
    second = None
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            client.models.create_or_update(Model(name="heart-classifier", type="mlflow_model", path=str(heart_model_dir)))
            client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="heart-crash")).result()
            client.batch_deployments.begin_create_or_update(BatchDeployment(
                name="slow", endpoint_name="heart-crash", model="azureml:heart-classifier@latest",
                code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
                instance_count=1, max_concurrency_per_instance=1, mini_batch_size=1,
                environment_variables={"ATTEMPTS_FILE": str(attempts), "SLEEP_S": "1.5"},
            ), set_default=True).result()
            job = client.batch_endpoints.invoke(endpoint_name="heart-crash",
                                                input=Input(type="uri_folder", path=str(HEART_UNLABELED)))
            wait_until(lambda: client.jobs.get(job.name).progress.mini_batches_completed >= 1, 60,
                       "first mini-batch scored")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        before_crash = attempts.read_text().split()
        assert len(before_crash) < 4, "the job ended before the server was killed; nothing to resume"

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home)
        with MLClient(endpoint=second.url, home=home) as client:
            final = wait_job(client, job.name, timeout=90)
            assert final.status == "Completed", (final.status_message, final.error, second.log()[-3000:])
            assert final.progress.rows == HEART_ROWS
            assert final.progress.files_completed == 4 and final.progress.files_failed == 0
            assert final.progress.mini_batches_completed == 4
            saved = client.jobs.download(job.name, download_path=tmp_path / "out")
            assert [p.name for p in saved] == ["predictions.csv"]
            assert predictions_of(saved[0]) == expected_rows(heart_model_dir)
        assert "resumed" in second.log(), second.log()[-3000:]
        scored = attempts.read_text().split()
        # finished mini-batches are not scored again; only the one in flight at the kill may be
        first_file = sorted(p.name for p in HEART_UNLABELED.glob("*.csv"))[0]
        assert scored.count(first_file) == 1, scored
        assert len(scored) <= 5, scored
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()


pytestmark = pytest.mark.timeout(240)
