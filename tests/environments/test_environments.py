"""Issue 11, acceptance 1–3: per-deployment environments built with uv from a local index.

1. An MLflow model trained in its own environment (scikit-learn 1.1.3 + xgboost 1.7.6, which the
   server's .venv lacks) runs with no ``environment``: its ``requirements.txt`` is built, and the
   predictions equal that environment's own ``predict``. With ``env_manager: local`` it is refused
   before scoring, naming each unmet requirement. The worker side there imports no server package.
2. A second deployment with the same spec reuses the build (its log shows no build); two jobs that
   need one new environment at once build it once.
3. A package that does not exist fails the job in Preparing with uv's error; a pin with no build
   for this Python fails naming the pin, the Python version and the nearest versions that install.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_UNLABELED, wait_job
from batchpoint import BatchDeployment, BatchEndpoint, Environment, Input, Model
from environments.conftest import job_log, phases, run_cli, statuses

SERVER_PACKAGES = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic", "pydantic_settings",
                   "httpx", "cryptography", "jmespath"]  # (click comes with mlflow-skinny, the model's own need)


def _deploy(client: Any, endpoint: str, deployment: str, model: str, **fields: Any) -> None:
    try:
        client.batch_endpoints.get(endpoint)
    except Exception:  # noqa: BLE001 - not there yet
        client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name=deployment, endpoint_name=endpoint, model=model, mini_batch_size=10, **fields)).result()


def _invoke(client: Any, endpoint: str, deployment: str) -> str:
    job = client.batch_endpoints.invoke(endpoint_name=endpoint, deployment_name=deployment,
                                        input=Input(type="uri_folder", path=str(HEART_UNLABELED)))
    return job.name


def _predictions(client: Any, name: str, where: Path) -> dict[str, int]:
    import pandas as pd

    files = client.jobs.download(name, download_path=where, output_name="score")
    frame = pd.read_csv(files[0], names=["row", "prediction", "file"])
    return {f"{f}:{int(r)}": int(p) for r, p, f in frame.itertuples(index=False)}


@pytest.fixture(scope="module")
def registered_old_model(env_client: Any, old_model: dict[str, Any]) -> str:
    env_client.models.create_or_update(Model(name="heart-xgb", path=str(old_model["path"]), type="mlflow_model"))
    return "azureml:heart-xgb@latest"


@pytest.fixture(scope="module")
def first_job(env_client: Any, registered_old_model: str) -> Any:
    _deploy(env_client, "heart-old", "xgb", registered_old_model)
    name = _invoke(env_client, "heart-old", "xgb")
    return wait_job(env_client, name, timeout=300)


# ---- acceptance 1 ---------------------------------------------------------------------------


def test_old_model_runs_in_its_own_environment(env_client, env_server, old_model, first_job, tmp_path):
    assert first_job.status == "Completed", first_job.status_message
    assert _predictions(env_client, first_job.name, tmp_path) == old_model["expected"]
    # the phase inside Preparing, with its time
    seen = phases(env_client, first_job.name)
    assert [p["state"] for p in seen] == ["started", "finished"], seen
    assert seen[-1]["seconds"] >= 0
    log = job_log(env_client, env_server, first_job.name)
    assert "from the model's python_env.yaml" in log and "requirement: scikit-learn==1.1.3" in log
    assert "'mlflow==2.10.2' is installed as 'mlflow-skinny==2.10.2'" in log
    assert "added 'pandas'" in log
    # the model's requirements name what the training environment was built from: the same build
    assert "found in the cache" in log
    [build] = [b for b in env_client.environments.list_builds() if b["hash"] == seen[-1]["environment"]]
    assert {"scikit-learn==1.1.3", "xgboost==1.7.6", "mlflow-skinny==2.10.2"} <= set(build["packages"])
    # the exclude-newer rule: the index also has numpy 2.0.2, which would break scikit-learn 1.1.3
    assert build["rule"].startswith("resolution rule: exclude-newer 2024-02-09T05:57:58Z")
    assert "(mlflow-skinny==2.10.2)" in build["rule"]
    assert "numpy==1.26.4" in build["packages"] and not any(p.startswith("numpy==2") for p in build["packages"])
    assert "uv venv --seed" in old_model["build_log"] and "+ setuptools==69" in old_model["build_log"]


def test_worker_in_the_environment_imports_no_server_package(env_client, first_job):
    [build] = [b for b in env_client.environments.list_builds() if b["source"] == "build_environment()"]
    python = str(Path(build["path"]) / "bin" / "python")
    check = subprocess.run([python, "-m", "batchpoint.worker", "--selfcheck"], capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["server_side_modules"] == []
    probe = ("import importlib.util, json, sys\n"
             "import batchpoint.worker.loop, batchpoint.scoring.scorers, batchpoint.storage.local\n"
             f"names = {SERVER_PACKAGES!r}\n"
             "print(json.dumps({'imported': sorted(n for n in names if n in sys.modules),"
             " 'installed': sorted(n for n in names if importlib.util.find_spec(n)),"
             " 'batchpoint': batchpoint.__file__}))")
    out = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True,
                                    timeout=120).stdout)
    assert out["imported"] == [] and out["installed"] == [], out
    assert "/_worker/" in out["batchpoint"]  # the worker-only copy, not an installed Batchpoint
    assert not any(p.startswith("batchpoint==") for p in build["packages"]), build["packages"]


def test_env_manager_local_is_refused_naming_each_unmet_requirement(env_client, registered_old_model):
    _deploy(env_client, "heart-old", "local", registered_old_model, env_manager="local")
    job = wait_job(env_client, _invoke(env_client, "heart-old", "local"), timeout=120)
    assert job.status == "Failed"
    assert "Running" not in statuses(env_client, job.name)  # refused before scoring
    message = job.status_message
    for pin in ("scikit-learn==1.1.3", "xgboost==1.7.6", "mlflow==2.10.2"):
        name = pin.split("==")[0]
        try:
            have = metadata.version(name if name != "mlflow" else "mlflow-skinny")
        except metadata.PackageNotFoundError:
            assert f"{pin} (not installed)" in message, message
        else:
            assert have != pin.split("==")[1]  # the server really lacks it
            assert f"{pin} (the server has " in message and have in message, message


# ---- acceptance 2 ---------------------------------------------------------------------------


def test_second_deployment_with_the_same_spec_reuses_the_build(env_client, env_server, registered_old_model,
                                                               first_job, old_model, tmp_path):
    _deploy(env_client, "heart-old2", "again", registered_old_model)
    job = wait_job(env_client, _invoke(env_client, "heart-old2", "again"), timeout=240)
    assert job.status == "Completed", job.status_message
    assert _predictions(env_client, job.name, tmp_path) == old_model["expected"]
    log = job_log(env_client, env_server, job.name)
    assert "found in the cache" in log and "no build" in log
    assert "uv venv" not in log and "uv pip install" not in log
    assert phases(env_client, job.name)[-1]["built"] is False


CONDA = {"name": "light-env", "channels": ["conda-forge"],
         "dependencies": ["python=3.8.5", "pip<=24.0", {"pip": ["pandas==2.2.0", "numpy==1.26.4"]}]}
SCORE_PY = """
import os
import pandas as pd


def init():
    pass


def run(mini_batch):
    return pd.DataFrame({"file": [os.path.basename(p) for p in mini_batch],
                         "rows": [len(pd.read_csv(p)) for p in mini_batch], "pandas": pd.__version__})
"""


def test_two_jobs_needing_one_new_environment_build_it_once(env_client, env_server, registered_old_model,
                                                            tmp_path):
    from batchpoint import CodeConfiguration

    env = env_client.environments.create_or_update(Environment(
        name="light-env", version="1", conda_file=CONDA, image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04",
        description="a scoring script's conda file"))
    assert env.version == "1" and env.conda_file == CONDA
    assert env_client.environments.get("light-env", version="1").build["built"] is False
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(SCORE_PY)
    _deploy(env_client, "heart-conda", "script", registered_old_model, environment="azureml:light-env:1",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"))
    names = [_invoke(env_client, "heart-conda", "script") for _ in range(2)]
    jobs = [wait_job(env_client, n, timeout=300) for n in names]
    assert [j.status for j in jobs] == ["Completed", "Completed"], [j.status_message for j in jobs]
    for j in jobs:  # scored in the environment: its pandas, not the server's
        [out] = env_client.jobs.download(j.name, download_path=tmp_path / j.name, output_name="score")
        text = out.read_text()
        assert text.count("2.2.0") == 4 and all(f"heart-unlabeled-{i}.csv" in text for i in range(4)), text
    logs = [job_log(env_client, env_server, j.name) for j in jobs]
    assert sum(log.count("uv venv --seed") for log in logs) == 1, logs
    assert sum(p["built"] for j in jobs for p in phases(env_client, j.name) if p["state"] == "finished") == 1
    for log in logs:  # what the conda file asks and this machine cannot honour, named
        assert "'python=3.8.5': the environment is built for that Python when this machine has it" in log
        # pandas 2.2.0 needs Python >= 3.9: resolved for this machine's Python instead (Azure would fail)
        # (the job that built it says so as it resolves; the one that found it in the cache, from the record)
        assert f"python: the spec cannot be resolved for Python 3.8.5: resolved for Python {platform.python_version()}" \
            in log
        assert "channels (conda-forge) are not used" in log
        assert "'pip<=24.0': the environment's seeded pip is used instead" in log
        assert "image 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04' is accepted but not used" in log
    shown = env_client.environments.get("light-env", version="1").build
    assert shown["built"] is True and Path(shown["path"]).is_dir() and shown["size_bytes"] > 10_000_000
    assert "pandas==2.2.0" in shown["packages"] and shown["last_used"]
    assert [b["hash"] for b in env_client.environments.list_builds()].count(shown["hash"]) == 1


# ---- acceptance 3 ---------------------------------------------------------------------------


def _failing(env_client: Any, deployment: str, pip: list[str], registered_old_model: str) -> Any:
    _deploy(env_client, "heart-bad", deployment, registered_old_model,
            environment={"conda_file": {"dependencies": [{"pip": pip}]}})
    job = wait_job(env_client, _invoke(env_client, "heart-bad", deployment), timeout=240)
    assert job.status == "Failed"
    assert statuses(env_client, job.name)[-2:] == ["Preparing", "Failed"]  # no Running: no mini-batch
    assert phases(env_client, job.name)[-1]["state"] == "failed"
    return job


def test_a_package_that_does_not_exist_fails_the_job_in_preparing(env_client, env_server, registered_old_model):
    job = _failing(env_client, "nopkg", ["batchpoint-no-such-package-x==1.0"], registered_old_model)
    assert "batchpoint-no-such-package-x" in job.status_message
    assert "uv failed" in job.status_message and "was not found in the package registry" in job.status_message
    assert "was not found in the package registry" in job_log(env_client, env_server, job.name)


def test_a_pin_with_no_build_for_this_python_moves_to_the_nearest_and_a_failure_names_it(env_client, env_server,
                                                                                        registered_old_model):
    """tensorflow 2.10.0 has no cp311 wheel: it moves to 2.12.0, the first that has one, which this
    mirror lists but cannot serve (the index lists its wheels without the files): the failure names
    the release that failed and the move made before it."""
    job = _failing(env_client, "nobuild", ["tensorflow==2.10.0"], registered_old_model)
    message = job.status_message
    py = platform.python_version()
    moved = (f"tensorflow 2.10.0 -> 2.12.0: 2.10.0 has no wheel for Python {py} (cp311, manylinux_x86_64): its "
             "wheels are for cp310, cp37, cp38, cp39; 2.12.0 is the nearest version that has one (newer)")
    assert "uv failed (exit 1): tensorflow==2.12.0 could not be downloaded from the index" in message, message
    assert moved in message
    assert f"moved: {moved}" in job_log(env_client, env_server, job.name)


def test_environment_cli_create_show_list_delete(env_server, tmp_path):
    spec = tmp_path / "env.yml"
    (tmp_path / "conda.yml").write_text("dependencies:\n  - pip:\n    - scikit-learn==1.1.3\n")
    spec.write_text("$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
                    "name: cli-env\nversion: 1\nconda_file: conda.yml\nimage: mcr.microsoft.com/azureml/minimal\n"
                    "tags: {stage: prod}\n")
    body = json.loads(run_cli(env_server, "environment", "create", "-f", str(spec), "-o", "json").stdout)
    assert body["conda_file"] == {"dependencies": [{"pip": ["scikit-learn==1.1.3"]}]} and body["version"] == "1"
    shown = json.loads(run_cli(env_server, "environment", "show", "-n", "cli-env", "-v", "1", "-o", "json").stdout)
    assert shown["build"]["built"] is False and "not built yet" in shown["build"]["reason"]
    run_cli(env_server, "environment", "delete", "-n", "cli-env", "-v", "1")
    missing = run_cli(env_server, "environment", "show", "-n", "cli-env", check=False)
    assert missing.returncode == 1 and "environment 'cli-env' was not found" in missing.stderr


def test_prune_removes_builds_unused_for_long(env_client):
    """Last: it removes the conda file's build (made to look unused for 40 days), and only that."""
    builds = {b["source"]: b for b in env_client.environments.list_builds()}
    assert env_client.environments.prune(older_than_days=30) == []  # every build was used just now
    old = builds["environment 'light-env:1'"]
    long_ago = time.time() - 40 * 86400
    os.utime(Path(old["path"]) / ".last-used", (long_ago, long_ago))
    removed = env_client.environments.prune(older_than_days=30)
    assert [r["hash"] for r in removed] == [old["hash"]]
    assert not Path(old["path"]).exists()
    left = [b["hash"] for b in env_client.environments.list_builds()]
    assert old["hash"] not in left and builds["build_environment()"]["hash"] in left
    assert env_client.environments.get("light-env", version="1").build["built"] is False
