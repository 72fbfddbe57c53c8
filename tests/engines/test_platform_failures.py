"""Failures of the platform, as a user meets them on a real server: a worker SIGKILLed while it
scores a mini-batch (acceptance c), a file removed between listing and fetching (d), and workers
killed while their init() runs (g). The scoring script writes marker files (``<kind>-<pid>``) in
``SIGNAL_DIR`` so the test can see which worker process is where, and kill it.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, wait_job
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from fixtures.flows import wait_until, write_script

pytestmark = pytest.mark.timeout(240)

SCORE_PY = """
import os
import time

import pandas as pd

SIGNALS = os.environ["SIGNAL_DIR"]


def _mark(kind):
    open(os.path.join(SIGNALS, f"{kind}-{os.getpid()}"), "w").close()


def init():
    _mark("init")
    time.sleep(float(os.environ.get("INIT_S", "0")))
    _mark("ready")


def run(mini_batch):
    _mark("run")
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == os.environ.get("HANG_ON") and not os.path.exists(os.path.join(SIGNALS, "released")):
            _mark("hang")
            time.sleep(120)
        if name == os.environ.get("REMOVE_WHEN"):
            os.remove(os.path.join(os.path.dirname(path), os.environ["REMOVE_FILE"]))
        time.sleep(float(os.environ.get("RUN_S", "0")))
        rows += [f"{name},{i}" for i in range(len(pd.read_csv(path)))]  # list elements: written as their text
    return rows
"""


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Endpoint ``engine-faults`` with deployment ``one`` (1 worker) and ``two`` (2 workers):
    mini_batch_size 1, max_retries 0, error_threshold 0 (any charged failure fails the job)."""
    code = write_script(tmp_path_factory.mktemp("fault-code"), SCORE_PY)
    ml_client.models.create_or_update(Model(name="engines-heart", type="mlflow_model", path=str(heart_model_dir)))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="engine-faults")).result()
    for name, workers in (("one", 1), ("two", 2)):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name="engine-faults", model="azureml:engines-heart@latest",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            instance_count=1, max_concurrency_per_instance=workers, mini_batch_size=1, error_threshold=0,
            retry_settings={"max_retries": 0, "timeout": 150}), set_default=name == "one").result()
    return "engine-faults"


def _invoke(ml_client: Any, deployment: str, folder: Path, signals: Path, **env: str) -> str:
    signals.mkdir(parents=True, exist_ok=True)
    return ml_client.batch_endpoints.invoke(
        endpoint_name="engine-faults", deployment_name=deployment, input=Input(type="uri_folder", path=str(folder)),
        environment_variables={"SIGNAL_DIR": str(signals), **env}).name


def _pids(signals: Path, kind: str) -> set[int]:
    return {int(p.name.split("-", 1)[1]) for p in signals.glob(f"{kind}-*")}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _worker_logs(server: Any, name: str) -> str:
    with server.rest() as rest:
        logs = rest.get(f"/jobs/{name}/logs").json()["logs"]
        return "".join(rest.get(f"/jobs/{name}/logs/{log['name']}").text for log in logs)


def _rows(ml_client: Any, name: str, tmp_path: Path) -> list[str]:
    (saved,) = ml_client.jobs.download(name, download_path=tmp_path, output_name="score")
    return saved.read_text().splitlines()


def _small_files(folder: Path, count: int) -> Path:
    """``count`` 3-row CSV files, unique to this test (so its upload is its own)."""
    folder.mkdir(parents=True)
    token = uuid.uuid4().hex
    for i in range(count):
        (folder / f"part-{i:02d}.csv").write_text(f"token,i\n{token},1\n{token},2\n{token},3\n")
    return folder


def test_a_worker_killed_mid_mini_batch_is_retried_as_platform(endpoint: str, ml_client: Any, server: Any,
                                                               tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    name = _invoke(ml_client, "two", HEART_UNLABELED, signals, HANG_ON="heart-unlabeled-1.csv")
    hung = wait_until(lambda: _pids(signals, "hang"), 90, "a worker scoring heart-unlabeled-1.csv")
    (signals / "released").touch()
    _kill(hung.pop())
    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)  # error_threshold 0 did not fail it
    assert job.failures == [] and job.progress.files_failed == 0
    assert job.progress.rows == HEART_ROWS and job.progress.files_completed == 4
    rows = _rows(ml_client, name, tmp_path / "out")
    assert len(rows) == HEART_ROWS and len(set(rows)) == HEART_ROWS  # every row, once
    logs = _worker_logs(server, name)
    # killed inside run() once: retried as the platform's (docs/faults.md, "A worker that dies inside run()")
    assert "platform failure, retried" in logs and "WorkerDied" in logs and "SIGKILL" in logs, logs[-3000:]


def test_a_file_removed_after_listing_is_an_input_failure(endpoint: str, ml_client: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(HEART_UNLABELED, data)
    (data / "zz-victim.csv").write_text(f"age\n{uuid.uuid4().int}\n")  # removed before it is fetched
    signals = tmp_path / "signals"
    signals.mkdir()
    name = ml_client.batch_endpoints.invoke(
        endpoint_name="engine-faults", deployment_name="one", input=Input(type="uri_folder", path=str(data)),
        error_threshold=-1, environment_variables={"SIGNAL_DIR": str(signals), "INIT_S": "1",
                                                   "REMOVE_WHEN": "heart-unlabeled-0.csv",
                                                   "REMOVE_FILE": "zz-victim.csv"}).name
    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)
    (failure,) = job.failures
    assert Path(failure.file).name == "zz-victim.csv" and failure.kind == "input" and failure.attempt == 1
    assert "StorageNotFoundError" in failure.error and "was not found" in failure.error, failure.error
    assert job.progress.rows == HEART_ROWS and job.progress.files_failed == 1


def test_init_deaths_spread_over_a_long_job_do_not_fail_it(endpoint: str, ml_client: Any, server: Any,
                                                           tmp_path: Path) -> None:
    folder = _small_files(tmp_path / "data", 14)
    signals = tmp_path / "signals"
    name = _invoke(ml_client, "one", folder, signals, INIT_S="1", RUN_S="0.4")
    killed: set[int] = set()
    for round_ in range(3):  # kill a worker in init(); let its replacement become ready; kill that one mid-run
        in_init = wait_until(lambda: _pids(signals, "init") - _pids(signals, "ready") - killed, 60,
                             f"round {round_}: a worker in init()")
        victim = in_init.pop()
        _kill(victim)
        killed.add(victim)
        ready = wait_until(lambda: _pids(signals, "ready") - killed, 60, f"round {round_}: a ready worker")
        if round_ < 2:
            survivor = ready.pop()
            wait_until(lambda: survivor in _pids(signals, "run"), 60, f"round {round_}: the worker scoring")
            _kill(survivor)
            killed.add(survivor)
    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.failures == [] and job.progress.files_completed == 14 and job.progress.rows == 14 * 3
    rows = _rows(ml_client, name, tmp_path / "out")
    assert sorted(rows) == sorted(f"part-{i:02d}.csv,{r}" for i in range(14) for r in range(3))
    assert _worker_logs(server, name).count("platform failure, retried") >= 1


def test_three_init_deaths_in_a_row_on_one_slot_fail_the_job_as_platform(endpoint: str, ml_client: Any,
                                                                         tmp_path: Path) -> None:
    folder = _small_files(tmp_path / "data", 3)
    signals = tmp_path / "signals"
    name = _invoke(ml_client, "one", folder, signals, INIT_S="5")
    killed: set[int] = set()
    for round_ in range(3):
        in_init = wait_until(lambda: _pids(signals, "init") - killed, 60, f"death {round_ + 1}: a worker in init()")
        victim = in_init.pop()
        _kill(victim)
        killed.add(victim)
    job = wait_job(ml_client, name, timeout=60)
    assert job.status == "Failed"
    message = job.status_message or ""
    assert "init()" in message and "3 times in a row" in message and "SIGKILL" in message, message
    assert "worker-0.log" in message, message
    assert job.error["code"] == "platform_error", job.error
    assert not _pids(signals, "ready")
