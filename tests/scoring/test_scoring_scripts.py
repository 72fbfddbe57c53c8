"""Acceptance 3: deployments with a user scoring script (``init()`` / ``run(mini_batch)``) over the
heart data: 2 instances × 2 workers, 2 files per mini-batch; failures and error_threshold,
retries, timeouts, a failing init(), summary_only, output location and name, and a stable order.

One scoring script serves every case; environment variables (deployment settings, or invoke
overrides) pick its behaviour. The independent jobs are all started by one module fixture so the
server runs them side by side; each test then checks its own.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS, wait_job
from batchpoint import BatchDeployment, CodeConfiguration, Input
from batchpoint.exceptions import NotFoundError
from fixtures.flows import (
    HeartData,
    expected_rows,
    make_endpoint,
    predictions_of,
    wait_until,
    write_script,
)

ENDPOINT = "heart-script"
FAILING = "heart-unlabeled-2.csv"
SLOW = "heart-unlabeled-1.csv"
FILE_ROWS = {"heart-unlabeled-0.csv": 100, "heart-unlabeled-1.csv": 100, "heart-unlabeled-2.csv": 100,
             "heart-unlabeled-3.csv": 3}

SCORE_PY = """
import glob
import os
import time

import mlflow.pyfunc
import pandas as pd

model = None


def init():
    global model
    if os.environ.get("PID_DIR"):  # lets a test see the worker processes
        open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w").close()
    if os.environ.get("DIE_IN_INIT"):  # a crash no exception reports (segfault, OOM killer)
        os._exit(int(os.environ["DIE_IN_INIT"]))
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("cannot load the model: " + os.environ["FAIL_INIT"])
    model = mlflow.pyfunc.load_model(glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/")[0])  # Azure's layout


def run(mini_batch):
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        if os.environ.get("ATTEMPTS_FILE"):
            with open(os.environ["ATTEMPTS_FILE"], "a") as out:
                out.write(name + "\\n")
        if name == os.environ.get("FAIL_ON"):
            raise ValueError(f"cannot score {name}: the rows are corrupt")
        if name == os.environ.get("SLEEP_ON"):
            time.sleep(float(os.environ.get("SLEEP_S", "60")))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
    result = pd.concat(frames, ignore_index=True)
    if os.environ.get("RETURN_LIST"):
        return [list(r) for r in result.itertuples(index=False)]
    return result
"""

DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "good": {},
    "as-list": {"environment_variables": {"RETURN_LIST": "1"}},
    "fails": {"environment_variables": {"FAIL_ON": FAILING}, "error_threshold": -1},
    "strict": {"environment_variables": {"FAIL_ON": FAILING}, "error_threshold": 0},
    "slow": {"environment_variables": {"SLEEP_ON": SLOW, "SLEEP_S": "60"}, "mini_batch_size": 1,
             "retry_settings": {"max_retries": 0, "timeout": 2}, "error_threshold": -1},
    "bad-init": {"environment_variables": {"FAIL_INIT": "weights file is truncated"}},
    "dies-in-init": {"environment_variables": {"DIE_IN_INIT": "3"}},
    "summary": {"output_action": "summary_only"},
    "sleepy": {"environment_variables": {"SLEEP_ON": "heart-unlabeled-0.csv", "SLEEP_S": "120"},
               "retry_settings": {"max_retries": 0, "timeout": 300}},
}


@pytest.fixture(scope="module")
def script_endpoint(ml_client: Any, heart_model: Any, batch_cluster: Any, heart_data: HeartData,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    code = write_script(tmp_path_factory.mktemp("score-code"), SCORE_PY)
    DEPLOYMENTS["sleepy"]["environment_variables"]["PID_DIR"] = str(tmp_path_factory.mktemp("sleepy-pids"))
    make_endpoint(ml_client, ENDPOINT)
    for name, settings in DEPLOYMENTS.items():
        spec = {
            "name": name, "endpoint_name": ENDPOINT, "model": "azureml:heart-classifier@latest",
            "compute": "azureml:batch-cluster",
            "code_configuration": CodeConfiguration(code=str(code), scoring_script="score.py"),
            "resources": {"instance_count": 2},
            "settings": {"max_concurrency_per_instance": 2, "mini_batch_size": 2, "error_threshold": -1,
                         "retry_settings": {"max_retries": 1, "timeout": 60}, **settings},
        }
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(**spec)).result()
    return ENDPOINT


@pytest.fixture(scope="module")
def runs(script_endpoint: str, ml_client: Any, cli_inproc: Any, heart_data: HeartData,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start the independent jobs of this module together; maps a case to its job name."""
    data = Input(type="uri_folder", path=f"azureml:{heart_data.folder_asset.name}@latest")
    counter = tmp_path_factory.mktemp("attempts") / "attempts.txt"

    def invoke(deployment: str, **overrides: Any) -> str:
        return ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name=deployment, input=data,
                                                **overrides).name

    out_folder = f"custom-out/{uuid.uuid4().hex[:8]}"
    out_uri = f"azureml://datastores/{heart_data.datastore.name}/paths/{out_folder}"
    names = {
        "good-1": invoke("good"),
        "good-2": invoke("good"),
        "as-list": invoke("as-list"),
        "fails": invoke("fails"),
        "strict": invoke("strict"),
        "retries": invoke("fails", mini_batch_size=1, max_retries=2,
                          environment_variables={"FAIL_ON": FAILING, "ATTEMPTS_FILE": str(counter)}),
        "slow": invoke("slow"),
        "bad-init": invoke("bad-init"),
        "dies-in-init": invoke("dies-in-init"),
        "summary": invoke("summary"),
        "output-path": cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "-d", "good", "--input", data.path,
                           "--output-path", out_uri, "--set", "output_file_name=scores.csv",
                           "--query", "name", "-o", "tsv").out.strip(),
    }
    return {"names": names, "counter": counter, "out_folder": out_folder, "out_uri": out_uri}


def _download(ml_client: Any, job: str, folder: Path) -> list[Path]:
    return ml_client.jobs.download(job, download_path=folder, output_name="score")


def test_script_deployment_scores_every_file(runs: dict[str, Any], ml_client: Any, heart_model_dir: Path,
                                             tmp_path: Path) -> None:
    job = wait_job(ml_client, runs["names"]["good-1"])
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.settings["instance_count"] == 2 and job.settings["max_concurrency_per_instance"] == 2
    assert job.progress.mini_batches_total == 2 and job.progress.mini_batches_completed == 2
    assert job.progress.rows == HEART_ROWS and job.progress.files_completed == 4
    assert len({p for p in job.log_files}) == 4, job.log_files  # 2 instances x 2 workers, one log each
    (saved,) = _download(ml_client, job.name, tmp_path)
    assert saved.name == "predictions.csv"
    assert predictions_of(saved, sep=" ") == expected_rows(heart_model_dir)


def test_run_may_return_a_list(runs: dict[str, Any], ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    job = wait_job(ml_client, runs["names"]["as-list"])
    assert job.status == "Completed", (job.status_message, job.error)
    (saved,) = _download(ml_client, job.name, tmp_path)
    # a list element is written as its text, as Azure writes it: [0, 1, 'heart-unlabeled-0.csv']
    scored = [tuple(ast.literal_eval(line)) for line in saved.read_text().splitlines()]
    assert scored == expected_rows(heart_model_dir)


def test_predictions_order_is_deterministic(runs: dict[str, Any], ml_client: Any, tmp_path: Path) -> None:
    files = []
    for key in ("good-1", "good-2"):
        job = wait_job(ml_client, runs["names"][key])
        assert job.status == "Completed", job.status_message
        (saved,) = _download(ml_client, job.name, tmp_path / key)
        files.append(saved.read_bytes())
    assert files[0] == files[1]
    assert files[0].count(b"\n") == HEART_ROWS


def test_failing_file_is_named_and_ignored_below_threshold(runs: dict[str, Any], ml_client: Any,
                                                          tmp_path: Path) -> None:
    job = wait_job(ml_client, runs["names"]["fails"])
    assert job.status == "Completed", (job.status_message, job.error)
    assert FAILING in (job.status_message or ""), job.status_message
    assert [Path(f.file).name for f in job.failures] == [FAILING], job.failures
    assert "ValueError" in job.failures[0].error and "the rows are corrupt" in job.failures[0].error
    assert job.progress.files_failed == 1 and job.progress.files_completed == 3
    assert job.progress.rows == HEART_ROWS - FILE_ROWS[FAILING]
    saved = {p.name: p for p in _download(ml_client, job.name, tmp_path)}
    assert set(saved) == {"predictions.csv", "errors.jsonl"}, saved  # the errors file comes beside it
    assert FAILING in saved["errors.jsonl"].read_text()
    scored = predictions_of(saved["predictions.csv"], sep=" ")
    assert len(scored) == HEART_ROWS - FILE_ROWS[FAILING]
    assert FAILING not in {f for _, _, f in scored}


def test_failing_file_fails_the_job_at_threshold_zero(runs: dict[str, Any], ml_client: Any, cli_inproc: Any) -> None:
    job = wait_job(ml_client, runs["names"]["strict"])
    assert job.status == "Failed", job.status_message
    message = job.status_message or ""
    assert FAILING in message and "ValueError" in message and "the rows are corrupt" in message, message
    assert "error_threshold" in message
    assert job.error and job.error.get("type") == "ValueError", job.error
    assert Path(job.error["file"]).name == FAILING
    streamed = cli_inproc("job", "stream", "-n", job.name, check=False)
    assert streamed.code == 1 and f"[Failed] {message}" in streamed.out
    shown = cli_inproc("job", "show", "-n", job.name, "--query", "status_message", "-o", "tsv")
    assert FAILING in shown.out


def test_max_retries_is_honoured(runs: dict[str, Any], ml_client: Any) -> None:
    job = wait_job(ml_client, runs["names"]["retries"])
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.settings["retry_settings"]["max_retries"] == 2 and job.settings["mini_batch_size"] == 1
    attempts = runs["counter"].read_text().split()
    assert attempts.count(FAILING) == 3, attempts  # the first try and max_retries (2) retries
    for other in set(FILE_ROWS) - {FAILING}:
        assert attempts.count(other) == 1, attempts
    assert [Path(f.file).name for f in job.failures] == [FAILING]


def test_timeout_is_honoured(runs: dict[str, Any], ml_client: Any) -> None:
    job = wait_job(ml_client, runs["names"]["slow"], timeout=60)
    assert job.status == "Completed", (job.status_message, job.error)
    assert [Path(f.file).name for f in job.failures] == [SLOW], job.failures
    error = job.failures[0].error
    assert "TimeoutError" in error and "timeout" in error and "2s" in error, error
    assert job.progress.rows == HEART_ROWS - FILE_ROWS[SLOW]
    assert (job.end_time - job.start_time).total_seconds() < 30  # the 60 s sleep was cut short


def test_init_failure_fails_the_job_with_the_user_error(runs: dict[str, Any], ml_client: Any) -> None:
    job = wait_job(ml_client, runs["names"]["bad-init"])
    assert job.status == "Failed"
    message = job.status_message or ""
    assert "init()" in message and "RuntimeError" in message, message
    assert "cannot load the model: weights file is truncated" in message
    assert "score.py" in message  # where in the user's code


def test_worker_dying_in_init_fails_the_job(runs: dict[str, Any], ml_client: Any) -> None:
    job = wait_job(ml_client, runs["names"]["dies-in-init"], timeout=60)
    assert job.status == "Failed"
    message = job.status_message or ""
    assert "init()" in message and "exit code 3" in message, message


def test_rest_deployment_header_picks_the_deployment(script_endpoint: str, ml_client: Any, server: Any,
                                                     heart_data: HeartData) -> None:
    body = {"properties": {"InputData": {"heart": {"JobInputType": "UriFile", "Uri": heart_data.file_uri}}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body,
                             headers={"azureml-model-deployment": "summary"})
    assert response.status_code == 202, response.text
    job = wait_job(ml_client, response.json()["name"])
    assert job.deployment_name == "summary" and job.status == "Completed", job.status_message
    assert job.progress.rows == FILE_ROWS["heart-unlabeled-0.csv"]


def test_summary_only_counts_rows_without_a_predictions_file(runs: dict[str, Any], ml_client: Any,
                                                             tmp_path: Path) -> None:
    job = wait_job(ml_client, runs["names"]["summary"])
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.settings["output_action"] == "summary_only"
    assert job.progress.rows == HEART_ROWS
    assert _download(ml_client, job.name, tmp_path) == []
    assert not list(tmp_path.rglob("*.csv"))


def test_output_path_and_file_name_are_respected(runs: dict[str, Any], ml_client: Any, heart_data: HeartData,
                                                 heart_model_dir: Path, tmp_path: Path) -> None:
    job = wait_job(ml_client, runs["names"]["output-path"])
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.outputs["score"].path == runs["out_uri"]
    assert job.outputs["score"].file_name == "scores.csv"
    on_disk = heart_data.datastore_root / runs["out_folder"] / "scores.csv"
    assert on_disk.is_file()
    assert not (heart_data.datastore_root / runs["out_folder"] / "predictions.csv").exists()
    (saved,) = _download(ml_client, job.name, tmp_path)
    assert saved == tmp_path / "named-outputs" / "score" / "scores.csv"
    assert predictions_of(saved, sep=" ") == expected_rows(heart_model_dir)


def test_cancel_a_long_job(script_endpoint: str, ml_client: Any, cli_inproc: Any, heart_data: HeartData) -> None:
    name = cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "-d", "sleepy", "--input",
               f"azureml:{heart_data.folder_asset.name}@latest", "--query", "name", "-o", "tsv").out.strip()
    pid_dir = Path(DEPLOYMENTS["sleepy"]["environment_variables"]["PID_DIR"])
    wait_until(lambda: len(list(pid_dir.iterdir())) == 4, 60, "4 workers started")
    wait_until(lambda: ml_client.jobs.get(name).status == "Running", 60, "job Running")
    canceled = cli_inproc("job", "cancel", "-n", name, "--query", "status", "-o", "tsv")
    assert canceled.out.strip() == "Canceled"
    job = wait_job(ml_client, name, timeout=30)
    assert job.status == "Canceled"
    assert job.end_time is not None
    assert "cancel" in (job.status_message or "")
    # the workers (one is sleeping 120 s in run()) are stopped, and the job stays Canceled
    pids = [int(p.name) for p in pid_dir.iterdir()]
    wait_until(lambda: not any(_alive(pid) for pid in pids), 30, "sleeping workers stopped")
    assert ml_client.jobs.get(name).status == "Canceled"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_unknown_deployment_is_refused(script_endpoint: str, ml_client: Any, heart_data: HeartData) -> None:
    with pytest.raises(NotFoundError, match="no-such-deployment"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="no-such-deployment",
                                         input=Input(path=f"azureml:{heart_data.folder_asset.name}@latest"))
