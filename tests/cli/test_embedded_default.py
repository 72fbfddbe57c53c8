"""What the README leads with, and two inputs nothing else covered.

* The embedded default: with no ``BATCHPOINT_SERVER_URL``, the CLI starts a local server under
  ``BATCHPOINT_HOME`` (SQLite, a local default data store, a process pool), the SDK finds and
  reuses it, a job started by a CLI call keeps running after that call exits, and
  ``batchpoint server stop`` stops it.
* Parquet input to an MLflow model with no scoring script.
* A positive ``error_threshold``: N failed files are tolerated, N + 1 fail the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from batchpoint import BatchDeployment, Data, Input
from conftest import HEART_UNLABELED, deploy_heart, expected_predictions, wait_job

CLI = str(Path(sys.executable).parent / "batchpoint")


def _embedded_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPOINT_")}
    env["BATCHPOINT_HOME"] = str(home)
    return env


def _bp(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180)
    assert proc.returncode == 0, f"batchpoint {' '.join(args)}:\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout


def test_cli_starts_a_local_server_the_sdk_reuses(tmp_path, heart_model_dir):
    home = tmp_path / "bp-home"
    env = _embedded_env(home)
    try:
        assert "not running" in _bp(env, "server", "status")
        shown = json.loads(_bp(env, "workspace", "show"))  # starts the server on first use
        info = json.loads((home / "server.json").read_text())
        assert shown["default_datastore"] == "workspaceblobstore" and (home / "metadata.db").is_file()
        assert (home / "owner.key").stat().st_mode & 0o777 == 0o600
        _bp(env, "model", "create", "--name", "heart-classifier", "--type", "mlflow_model", "--path", str(heart_model_dir))
        _bp(env, "batch-endpoint", "create", "--name", "embedded-ep")
        spec = tmp_path / "deployment.yml"
        spec.write_text("name: main\nendpoint_name: embedded-ep\nmodel: azureml:heart-classifier@latest\n"
                        "settings:\n  mini_batch_size: 2\n")
        _bp(env, "batch-deployment", "create", "-f", str(spec), "--set-default")
        job = _bp(env, "batch-endpoint", "invoke", "-n", "embedded-ep", "--input", str(HEART_UNLABELED),
                  "--query", "name", "-o", "tsv").strip()
        # the CLI has exited; the job goes on in the server it started. The SDK, given only the home,
        # finds that same server (no second one is started).
        code = ("import json, sys; from batchpoint import MLClient; c = MLClient(home=sys.argv[1]); "
                "j = c.jobs.wait(sys.argv[2], timeout=120); print(json.dumps({'status': j.status, 'rows': j.progress.rows, "
                "'url': c._transport.base_url}))")
        out = subprocess.run([sys.executable, "-c", code, str(home), job], capture_output=True, text=True, env=env,
                             timeout=180)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen == {"status": "Completed", "rows": 303, "url": info["url"]}
        assert json.loads((home / "server.json").read_text())["pid"] == info["pid"]
        assert f"running at {info['url']}" in _bp(env, "server", "status")
    finally:
        subprocess.run([CLI, "server", "stop"], capture_output=True, text=True, env=env, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _pid_alive(info["pid"]):
        time.sleep(0.2)
    assert not _pid_alive(info["pid"]), "server stop left the server running"
    assert "not running" in _bp(env, "server", "status")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def parquet_endpoint(ml_client, heart_model_dir):
    deploy_heart(ml_client, "parquet-ep", heart_model_dir, mini_batch_size=2)
    return "parquet-ep"


def test_parquet_input_to_an_mlflow_model(ml_client, parquet_endpoint, heart_model_dir, tmp_path):
    folder = tmp_path / "heart-parquet"
    folder.mkdir()
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        pd.read_csv(csv).to_parquet(folder / f"{csv.stem}.parquet", index=False)
    data = ml_client.data.create_or_update(Data(name="heart-parquet", path=str(folder), type="uri_folder"))
    job = wait_job(ml_client, ml_client.batch_endpoints.invoke(endpoint_name=parquet_endpoint, input=Input(path=data.id)).name)
    assert job.status == "Completed", job.error
    [path] = ml_client.jobs.download(job.name, download_path=tmp_path / "out")
    frame = pd.read_csv(path, names=["row", "prediction", "file"])
    expected = {(f"{name.rsplit('.', 1)[0]}.parquet", row): pred for (name, row), pred in expected_predictions(heart_model_dir).items()}
    assert {(f, r): int(p) for f, r, p in zip(frame.file, frame.row, frame.prediction)} == expected


@pytest.mark.parametrize(("bad_files", "status"), [(1, "Completed"), (2, "Failed")])
def test_positive_error_threshold(ml_client, parquet_endpoint, tmp_path, bad_files, status):
    """error_threshold 1: one unreadable file is tolerated (and named), a second fails the job."""
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="threshold1", endpoint_name=parquet_endpoint, model="azureml:heart-classifier@latest",
        mini_batch_size=1, error_threshold=1, retry_settings={"max_retries": 0, "timeout": 60})).result()
    folder = tmp_path / f"mixed-{bad_files}"
    folder.mkdir()
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        (folder / csv.name).write_bytes(csv.read_bytes())
    for i in range(bad_files):
        (folder / f"notes-{i}.txt").write_text("not a table\n")
    job = ml_client.batch_endpoints.invoke(endpoint_name=parquet_endpoint, deployment_name="threshold1",
                                           input=Input(type="uri_folder", path=str(folder)))
    done = wait_job(ml_client, job.name)
    assert done.status == status, (done.status_message, done.error)
    assert done.progress.files_failed == bad_files
    assert "notes-" in done.status_message  # the failed file is named
    if status == "Completed":
        assert done.progress.rows == 303 and "error_threshold 1" in done.status_message
    else:
        assert "more than error_threshold 1" in done.status_message and "FileReadError" in done.status_message
