"""Issue 19 on a compute of ``type: ray`` (the test command's Ray cluster): the same rules as the
local pool's (tests/worker/test_scoring_code_faults.py), through the shared policy.

* an actor whose ``init()`` never returns is killed past ``settings.init_timeout`` and counted like
  a death in init(): the job fails naming ``init()``, the limit and the worker log, and shows the
  "running init() on N workers" phase;
* ``run()`` returning 3 results for a 5-file mini-batch: the shortfall is charged;
* a worker that ``os._exit(3)``\\ s inside ``run()``: that file's failure (kind user, its exit code,
  as the actor's fenced worker process reports it) and the job goes on.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from conftest import wait_job
from fixtures.flows import write_script

pytestmark = pytest.mark.timeout(240)

COMPUTE = "ray-faults"

SCORE_PY = """
import os
import time

import pandas as pd


def init():
    if os.environ.get("INIT_HANG"):
        print("init(): waiting forever", flush=True)
        time.sleep(3600)


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if os.environ.get("EXIT_ON") in names:
        os._exit(3)
    rows = [f"{name},{len(pd.read_csv(path))}" for name, path in zip(names, mini_batch)]
    return rows[:3] if os.environ.get("MODE") == "short" else rows
"""


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, ray_address: str, ray_token: str, heart_pickle_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> str:
    ml_client.compute.begin_create_or_update(AmlCompute(
        name=COMPUTE, type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
        max_instances=2)).result()
    code = write_script(tmp_path_factory.mktemp("ray-faults-code"), SCORE_PY)
    ml_client.models.create_or_update(Model(name="ray-faults", type="custom_model", path=str(heart_pickle_dir)))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="ray-faults")).result()
    for name, size in (("one", 1), ("five", 5)):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name="ray-faults", model="azureml:ray-faults@latest", compute=f"azureml:{COMPUTE}",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            instance_count=1, max_concurrency_per_instance=1, mini_batch_size=size, error_threshold=-1,
            init_timeout=6, retry_settings={"max_retries": 0, "timeout": 120}), set_default=name == "one").result()
    return "ray-faults"


def _files(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    token = uuid.uuid4().hex
    for i in range(count):
        (folder / f"file-{i:02d}.csv").write_text(f"token,i\n{token},1\n{token},2\n")
    return folder


def _invoke(ml_client: Any, deployment: str, folder: Path, **env: str) -> str:
    return ml_client.batch_endpoints.invoke(endpoint_name="ray-faults", deployment_name=deployment,
                                            input=Input(type="uri_folder", path=str(folder)),
                                            environment_variables=dict(env)).name


def test_an_init_that_never_returns_on_ray_fails_the_job_naming_init(ml_client: Any, endpoint: str,
                                                                     tmp_path: Path) -> None:
    name = _invoke(ml_client, "one", _files(tmp_path / "data", 2), INIT_HANG="1")
    job = wait_job(ml_client, name, timeout=150)
    assert job.status == "Failed", (job.status, job.status_message)
    message = job.status_message or ""
    assert "init()" in message and "settings.init_timeout (6 s)" in message and "3 times in a row" in message
    assert "logs/worker-0.log" in message, message
    phases = [e for e in ml_client.jobs.events(name) if e.type == "phase" and e.data.get("phase") == "init()"]
    assert phases and phases[0].message == "running init() on 1 worker", [(e.data, e.message) for e in phases]


def test_a_shortfall_on_ray_is_charged(ml_client: Any, endpoint: str, tmp_path: Path) -> None:
    name = _invoke(ml_client, "five", _files(tmp_path / "data", 10), MODE="short")
    job = wait_job(ml_client, name, timeout=150)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.files_completed == 6 and job.progress.files_failed == 4 and job.progress.rows == 6
    assert all("ResultShortfall" in f.error and f.kind == "user" for f in job.failures), job.failures


def test_an_actor_exiting_inside_run_fails_that_file_not_the_job(ml_client: Any, endpoint: str,
                                                                  tmp_path: Path) -> None:
    name = _invoke(ml_client, "one", _files(tmp_path / "data", 3), EXIT_ON="file-01.csv")
    job = wait_job(ml_client, name, timeout=200)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.files_completed == 2 and job.progress.files_failed == 1
    (failure,) = job.failures
    assert Path(failure.file).name == "file-01.csv" and failure.kind == "user", failure
    assert "while run() was scoring" in failure.error, failure.error
    # the actor's worker process (fenced) says how it ended; in the actor's own process (isolation none)
    # Ray only says it "unexpectedly exits", retried as the platform's first
    assert "exited by itself with exit code 3" in failure.error or "ended unexpectedly" in failure.error
