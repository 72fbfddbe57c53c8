"""Jobs on a compute of ``type: ray``, through the real server, on the test command's Ray cluster
(a head and a second worker node in a loopback-only network namespace):

* the heart model's job on Ray gives the same predictions as on the local pool;
* the worker node killed mid-job (its processes SIGKILLed by PID) → the job still completes, every
  input row exactly once, the same predictions as a clean run, the lost mini-batches retried as
  platform failures (not charged); the node is started again for later tests. Its output goes to
  Azurite: the actors write their parts to the job's staging area there themselves (none is in the
  server's job folder) and the staging area is gone once the job is Completed;
* ``job cancel`` → Canceled within 5 s, and no worker actor left (Ray's state API).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, wait_job
from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from fixtures.flows import expected_rows, predictions_of, wait_until, write_script
from engines.ray_cluster.conftest import (
    alive_actors, blobs_under, kill_worker_node, register_out_store, restart_worker_node, running_batches,
    worker_node_id,
)

pytestmark = pytest.mark.timeout(240)

COMPUTE = "ray-cluster"

# The heart model scored file by file, with a pause per file so a job lasts long enough to kill a
# node or cancel it mid-way; it writes row,prediction,file like the MLflow deployment.
SCORE_PY = """
import glob
import os
import pickle
import time

import pandas as pd


def init():
    global model
    path = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "model.pkl"), recursive=True)[0]
    with open(path, "rb") as f:
        model = pickle.load(f)


def run(mini_batch):
    rows = []
    for path in mini_batch:
        frame = pd.read_csv(path)
        name = os.path.basename(path)
        rows += [f"{i},{int(p)},{name}" for i, p in enumerate(model.predict(frame))]
        time.sleep(float(os.environ.get("RUN_S", "0")))
    return rows
"""


@pytest.fixture(scope="module")
def ray_compute(ml_client: Any, ray_address: str, ray_token: str) -> str:
    ml_client.compute.begin_create_or_update(AmlCompute(
        name=COMPUTE, type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
        max_instances=2)).result()
    return COMPUTE


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four heart files, each three times under another name: 12 files, 909 rows."""
    folder = tmp_path_factory.mktemp("heart-many")
    for copy in range(3):
        for src in sorted(HEART_UNLABELED.glob("*.csv")):
            shutil.copy(src, folder / f"c{copy}-{src.name}")
    return folder


@pytest.fixture(scope="module")
def heart_endpoint(ml_client: Any, heart_pickle_dir: Path, ray_compute: str,
                   tmp_path_factory: pytest.TempPathFactory) -> str:
    """Endpoint ``ray-heart``: the heart script, 1 file per mini-batch, 2 workers, on Ray (deployment
    ``ray``) and on the local pool (deployment ``local``); max_retries 0, error_threshold 0."""
    code = write_script(tmp_path_factory.mktemp("ray-code"), SCORE_PY)
    ml_client.models.create_or_update(Model(name="ray-heart", type="custom_model", path=str(heart_pickle_dir)))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="ray-heart")).result()
    for name, compute in (("ray", f"azureml:{ray_compute}"), ("local", None)):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name="ray-heart", model="azureml:ray-heart@latest", compute=compute,
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            instance_count=1, max_concurrency_per_instance=2, mini_batch_size=1, error_threshold=0,
            retry_settings={"max_retries": 0, "timeout": 120}), set_default=name == "ray").result()
    return "ray-heart"


def _invoke(ml_client: Any, deployment: str, folder: Path, run_s: float = 0, output_path: str | None = None) -> str:
    return ml_client.batch_endpoints.invoke(endpoint_name="ray-heart", deployment_name=deployment,
                                            input=Input(type="uri_folder", path=str(folder)), output_path=output_path,
                                            environment_variables={"RUN_S": str(run_s)}).name


def _rows(ml_client: Any, job: str, where: Path) -> list[tuple[int, int, str]]:
    [saved] = ml_client.jobs.download(job, download_path=where)
    return predictions_of(saved)


def test_heart_job_on_ray_equals_the_local_pool(ml_client: Any, heart_model_dir: Path, heart_endpoint: str,
                                                tmp_path: Path) -> None:
    on_ray, on_local = _invoke(ml_client, "ray", HEART_UNLABELED), _invoke(ml_client, "local", HEART_UNLABELED)
    final = wait_job(ml_client, on_ray, timeout=120)
    assert final.status == "Completed", (final.status_message, final.error)
    assert final.progress.rows == HEART_ROWS and final.progress.mini_batches_completed == 4
    assert wait_job(ml_client, on_local, timeout=120).status == "Completed"
    got = _rows(ml_client, on_ray, tmp_path / "ray")
    assert got == _rows(ml_client, on_local, tmp_path / "local") == expected_rows(heart_model_dir)


def test_worker_node_killed_mid_job(ml_client: Any, server: Any, heart_endpoint: str, many_files: Path,
                                    ray_driver: str, azurite_blob_url: str, out_container: Any, tmp_path: Path) -> None:
    store = register_out_store(ml_client, azurite_blob_url)
    clean = _invoke(ml_client, "local", many_files)
    job = SimpleNamespace(name=_invoke(ml_client, "ray", many_files, run_s=0.7,
                                       output_path=f"azureml://datastores/{store}/paths/node-kill"))
    node = worker_node_id()
    staging = f"azureml/{job.name}/parts/"

    def busy_on_worker_node() -> bool:
        done = ml_client.jobs.get(job.name).progress.mini_batches_completed
        return done >= 2 and running_batches(node) > 0

    wait_until(busy_on_worker_node, 90, "two mini-batches done and one running on the worker node")
    assert len(blobs_under(out_container, staging)) >= 2  # the finished parts, written by the actors to Azurite
    try:
        killed = kill_worker_node()
        assert len(killed) > 2  # ray start, its raylet, the node's actors and agents
        final = wait_job(ml_client, job.name, timeout=150)
    finally:
        restart_worker_node(ray_driver)
    assert final.status == "Completed", (final.status_message, final.error)
    p = final.progress
    assert (p.files_completed, p.files_failed, p.mini_batches_completed) == (12, 0, 12)
    got = _rows(ml_client, job.name, tmp_path / "ray")
    assert len(got) == 3 * HEART_ROWS
    assert set(Counter((f, r) for r, _, f in got).values()) == {1}  # every input row exactly once
    assert wait_job(ml_client, clean, timeout=120).status == "Completed"
    assert got == _rows(ml_client, clean, tmp_path / "clean")  # the same predictions as a clean run
    assert list(server.home.glob(f"**/{job.name}/parts/*.csv")) == []  # no part came through the server
    assert blobs_under(out_container, staging) == []  # the staging area is gone once Completed
    assert blobs_under(out_container, "node-kill/") == [f"node-kill/{final.outputs['score'].file_name}"]
    logs = "".join(f.read_text() for f in sorted(server.home.glob(f"**/{job.name}/logs/worker-*.log")))
    assert "platform failure, retried" in logs and "the Ray actor of worker slot" in logs, logs[-3000:]


def test_cancel_stops_every_actor_within_5_s(ml_client: Any, heart_endpoint: str, many_files: Path,
                                            ray_driver: str) -> None:
    parked = {a["actor_id"] for a in alive_actors()}  # earlier jobs' actors kept warm (engines/ray_warm.py)
    job = SimpleNamespace(name=_invoke(ml_client, "ray", many_files, run_s=60))

    def of_the_job(states: tuple[str, ...] | None = None) -> list[dict]:
        return [a for a in alive_actors(states) if a["actor_id"] not in parked]

    wait_until(lambda: len(of_the_job(("ALIVE",))) >= 2 and ml_client.jobs.get(job.name).status == "Running", 90,
               "the job's two actors alive")
    time.sleep(1.0)  # they are inside run() now, sleeping
    started = time.monotonic()
    ml_client.jobs.begin_cancel(job.name)
    wait_until(lambda: ml_client.jobs.get(job.name).status == "Canceled", 5, "status Canceled")
    wait_until(lambda: not of_the_job(), max(0.1, 5 - (time.monotonic() - started)), "no worker actor of the job left")
    assert time.monotonic() - started <= 5
