"""Acceptance 4 of issue 11, and the scoring-script contract as Azure runs it.

A deployment folder shaped like Azure's batch samples (``heart-classifier-custom/{model,code,
environment}`` and its YAML files), created with the CLI from those files:

* a ``custom_model`` registered from a folder named ``model`` holding ``model.pkl`` (trained here);
* ``batch_driver_parquet.py`` — Azure's custom-outputs-parquet driver with the custom-model
  idiom ``glob(AZUREML_MODEL_DIR + "/*/*.pkl")``: it writes one Parquet file per input to
  ``AZUREML_BI_OUTPUT_PATH`` under ``output_action: summary_only`` and returns ``mini_batch``;
* ``batch_driver.py`` — the other idiom, ``os.path.join(AZUREML_MODEL_DIR, "model")``, returning a
  DataFrame under ``append_row`` (written space-separated, as Azure writes it);
* a single-file model given inline in an SDK ``BatchDeployment`` (``model=Model(path=...pkl)``).

ENVIRONMENT STEP (issue 11 part A): the parquet deployment names its own conda file (inline
``environment: {conda_file, image}``), as the sample does; the environments builder
(``batchpoint.environments``) builds it with uv and the workers run there —
:func:`test_parquet_job_ran_in_its_conda_file_environment` checks that (skipped where that package
is absent).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fixtures.custom_models import conda_yaml
from conftest import HEART_UNLABELED, wait_job
from batchpoint import BatchDeployment, CodeConfiguration, Input, Model
from batchpoint.exceptions import BatchpointError, NotFoundError

ENDPOINT = "heart-custom-batch"

PARQUET_DRIVER = '''
import glob
import os
import pickle
import sys
from pathlib import Path
from typing import List

import pandas as pd


def init():
    global model
    global output_path
    print("scoring in", sys.prefix)

    # AZUREML_MODEL_DIR is an environment variable created during deployment
    # It is the path to the model folder
    output_path = os.environ["AZUREML_BI_OUTPUT_PATH"]
    model_path = os.environ["AZUREML_MODEL_DIR"]
    model_file = glob.glob(f"{model_path}/*/*.pkl")[-1]

    with open(model_file, "rb") as file:
        model = pickle.load(file)


def run(mini_batch: List[str]):
    for file_path in mini_batch:
        data = pd.read_csv(file_path)
        pred = model.predict(data)

        data["prediction"] = pred

        output_file_name = Path(file_path).stem
        output_file_path = os.path.join(output_path, output_file_name + ".parquet")
        data.to_parquet(output_file_path)

    return mini_batch
'''

APPEND_DRIVER = '''
import os
import pickle

import pandas as pd


def init():
    global model
    # The path "model" is the name of the registered model's folder
    model_path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model")
    with open(os.path.join(model_path, "model.pkl"), "rb") as file:
        model = pickle.load(file)


def run(mini_batch):
    results = []
    for file_path in mini_batch:
        data = pd.read_csv(file_path)
        for row, pred in enumerate(model.predict(data)):
            results.append({"file": os.path.basename(file_path), "row": row, "prediction": int(pred)})
    return pd.DataFrame(results)
'''

SINGLE_FILE_DRIVER = '''
import os
import pickle

import pandas as pd


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "heart.pkl"), "rb") as file:
        model = pickle.load(file)


def run(mini_batch):
    return [f"{os.path.basename(p)} {sum(int(x) for x in model.predict(pd.read_csv(p)))}" for p in mini_batch]
'''


def _yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, pickled_heart: Path) -> Path:
    """``heart-classifier-custom/`` as an Azure sample lays it out, with its YAML files."""
    root = tmp_path_factory.mktemp("deploy-models") / "heart-classifier-custom"
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.pkl").write_bytes((pickled_heart / "model.pkl").read_bytes())
    (root / "model" / "heart.pkl").write_bytes((pickled_heart / "model.pkl").read_bytes())  # the single-file case
    _yaml(root / "code" / "batch_driver_parquet.py", PARQUET_DRIVER)
    _yaml(root / "code" / "batch_driver.py", APPEND_DRIVER)
    _yaml(root / "code-single" / "batch_driver.py", SINGLE_FILE_DRIVER)
    _yaml(root / "environment" / "conda.yaml", conda_yaml())
    _yaml(root / "model.yml", """
        $schema: https://azuremlschemas.azureedge.net/latest/model.schema.json
        name: heart-classifier-sklpipe
        version: 1
        type: custom_model
        path: model
        description: A heart condition classifier (a pickled scikit-learn pipeline)
        tags:
          framework: scikit-learn
          revision: 3
        properties:
          trained_on: heart.csv
    """)
    _yaml(root / "compute.yml", """
        $schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
        name: cpu-cluster
        type: amlcompute
        size: STANDARD_DS3_v2
        tier: dedicated
        location: westeurope
        min_instances: 0
        max_instances: 2
        idle_time_before_scale_down: 120
        identity:
          type: system_assigned
    """)
    _yaml(root / "endpoint.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json
        name: {ENDPOINT}
        description: A heart condition classifier for batch inference
        auth_mode: aad_token
    """)
    _yaml(root / "deployment-parquet.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
        endpoint_name: {ENDPOINT}
        name: classifier-parquet
        type: model
        description: A heart condition classifier writing Parquet files
        model: azureml:heart-classifier-sklpipe:1
        environment:
          name: batch-mlflow-xgboost
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
          conda_file: environment/conda.yaml
        code_configuration:
          code: code
          scoring_script: batch_driver_parquet.py
        compute: azureml:cpu-cluster
        resources:
          instance_count: 2
        settings:
          max_concurrency_per_instance: 1
          mini_batch_size: 2
          output_action: summary_only
          retry_settings:
            max_retries: 3
            timeout: 300
          error_threshold: -1
          logging_level: info
    """)
    _yaml(root / "deployment-append.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
        endpoint_name: {ENDPOINT}
        name: classifier-rows
        model: azureml:heart-classifier-sklpipe@latest
        code_configuration:
          code: code
          scoring_script: batch_driver.py
        compute: azureml:cpu-cluster
        resources:
          instance_count: 1
        max_concurrency_per_instance: 2
        mini_batch_size: 1
        output_action: append_row
        output_file_name: predictions.csv
        retry_settings:
          max_retries: 1
          timeout: 120
    """)
    return root


@pytest.fixture(scope="module")
def jobs(sample: Path, cli_inproc: Any, ml_client: Any) -> dict[str, str]:
    """Everything created from the sample's files with the CLI; the jobs started side by side."""
    cli_inproc("model", "create", "-f", str(sample / "model.yml"))
    cli_inproc("compute", "create", "-f", str(sample / "compute.yml"))
    cli_inproc("batch-endpoint", "create", "-f", str(sample / "endpoint.yml"))
    cli_inproc("batch-deployment", "create", "-f", str(sample / "deployment-parquet.yml"), "--set-default")
    cli_inproc("batch-deployment", "create", "-f", str(sample / "deployment-append.yml"))
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="classifier-file", endpoint_name=ENDPOINT, model=Model(path=str(sample / "model" / "heart.pkl")),
        code_configuration=CodeConfiguration(code=str(sample / "code-single"), scoring_script="batch_driver.py"),
        compute="cpu-cluster", instance_count=1, mini_batch_size=4, output_action="append_row",
        output_file_name="sums.txt")).result()

    def invoke(*extra: str) -> str:
        return cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "--input", str(HEART_UNLABELED), *extra,
                   "--query", "name", "-o", "tsv").out.strip()

    def sdk_invoke(deployment: str) -> str:
        return ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name=deployment,
                                                input=Input(type="uri_folder", path=str(HEART_UNLABELED))).name

    return {"parquet": invoke("--experiment-name", "heart-parquet"),
            "rows": sdk_invoke("classifier-rows"), "file": sdk_invoke("classifier-file")}


def _completed(ml_client: Any, name: str) -> Any:
    job = wait_job(ml_client, name, timeout=240)
    assert job.status == "Completed", (job.status_message, job.error, job.failures)
    return job


def test_custom_model_writes_parquet_to_bi_output_under_summary_only(
        jobs: dict[str, str], ml_client: Any, cli_inproc: Any, heart_expected: dict[str, list[int]], tmp_path: Path) -> None:
    job = _completed(ml_client, jobs["parquet"])
    assert job.settings["output_action"] == "summary_only"
    # run() returned the 4 paths it processed: that is what counts as succeeded
    assert job.progress.rows == 4 and job.progress.files_completed == 4
    out = cli_inproc("job", "download", "--name", job.name, "--output-name", "score", "--download-path", str(tmp_path))
    folder = tmp_path / "named-outputs" / "score"
    files = sorted(glob.glob(str(folder / "*")))
    assert [Path(f).name for f in files] == [f"{stem}.parquet" for stem in heart_expected], out.out
    for stem, expected in heart_expected.items():  # Azure's reading of the result
        frame = pd.read_parquet(folder / f"{stem}.parquet")
        original = pd.read_csv(HEART_UNLABELED / f"{stem}.csv")
        assert frame["prediction"].tolist() == expected
        pd.testing.assert_frame_equal(frame.drop(columns=["prediction"]), original)
    assert not (folder / "predictions.csv").exists()  # summary_only: no predictions file


def test_model_dir_join_model_idiom_and_dataframe_rows(jobs: dict[str, str], ml_client: Any,
                                                      heart_expected: dict[str, list[int]], tmp_path: Path) -> None:
    job = _completed(ml_client, jobs["rows"])
    [saved] = ml_client.jobs.download(job.name, download_path=tmp_path, output_name="score")
    assert saved.name == "predictions.csv"
    frame = pd.read_csv(saved, header=None, names=["file", "row", "prediction"], sep=" ")
    got = {stem: frame[frame["file"] == f"{stem}.csv"].sort_values("row")["prediction"].tolist()
           for stem in heart_expected}
    assert got == heart_expected
    first = saved.read_text().splitlines()[0]
    assert first == "heart-unlabeled-0.csv 0 " + str(heart_expected["heart-unlabeled-0"][0])


def test_single_file_custom_model_inline_in_the_sdk(jobs: dict[str, str], ml_client: Any,
                                                    heart_expected: dict[str, list[int]], tmp_path: Path) -> None:
    deployment = ml_client.batch_deployments.get("classifier-file", ENDPOINT)
    assert deployment.model == f"azureml:{ENDPOINT}-classifier-file:1"  # registered by the server
    model = ml_client.models.get(f"{ENDPOINT}-classifier-file", version="1")
    assert model.type == "custom_model"
    job = _completed(ml_client, jobs["file"])
    [saved] = ml_client.jobs.download(job.name, download_path=tmp_path, output_name="score")
    assert saved.read_text() == "".join(f"{stem}.csv {sum(p)}\n" for stem, p in heart_expected.items())


def test_registered_model_keeps_its_azure_yaml_fields(jobs: dict[str, str], cli_inproc: Any) -> None:
    shown = json.loads(cli_inproc("model", "show", "-n", "heart-classifier-sklpipe", "-v", "1").out)
    assert shown["version"] == "1" and shown["type"] == "custom_model"
    assert shown["tags"] == {"framework": "scikit-learn", "revision": "3"}
    assert shown["properties"] == {"trained_on": "heart.csv"}
    compute = json.loads(cli_inproc("compute", "show", "-n", "cpu-cluster").out)
    assert (compute["tier"], compute["location"], compute["size"]) == ("dedicated", "westeurope", "STANDARD_DS3_v2")
    assert compute["identity"] == {"type": "system_assigned"}
    deployment = json.loads(cli_inproc("batch-deployment", "show", "-n", "classifier-parquet", "-e", ENDPOINT).out)
    env = deployment["environment"]  # stored, with the conda file's content, for the environment builder
    assert env["image"].startswith("mcr.microsoft.com/") and env["conda_file"]["name"] == "heart-classifier-batch"
    [pip] = [d["pip"] for d in env["conda_file"]["dependencies"] if isinstance(d, dict)]
    assert [p.split("==")[0] for p in pip] == ["pandas", "pyarrow", "scikit-learn"]


def test_child_job_and_experiment_name(jobs: dict[str, str], ml_client: Any, cli_inproc: Any) -> None:
    parent = _completed(ml_client, jobs["parquet"])
    assert parent.experiment_name == "heart-parquet"
    assert ml_client.jobs.get(jobs["rows"]).experiment_name == ENDPOINT  # Azure's default: the endpoint
    [child] = ml_client.jobs.list(parent_job_name=parent.name)
    assert (child.display_name, child.type, child.parent_job_name) == ("batchscoring", "parallel", parent.name)
    assert child.status == parent.status and child.progress == parent.progress
    listed = json.loads(cli_inproc("job", "list", "--parent-job-name", parent.name).out)
    assert [c["name"] for c in listed] == [child.name]
    assert json.loads(cli_inproc("job", "show", "-n", child.name).out)["parent_job_name"] == parent.name
    assert ml_client.jobs.list(parent_job_name=child.name) == []  # the step has no children
    # the list-jobs verbs of both resources
    of_deployment = cli_inproc("batch-deployment", "list-jobs", "-n", "classifier-parquet", "-e", ENDPOINT,
                        "--query", "[].name", "-o", "tsv").out.split()
    assert of_deployment == [parent.name]
    of_endpoint = set(cli_inproc("batch-endpoint", "list-jobs", "-n", ENDPOINT, "--query", "[].name", "-o", "tsv").out.split())
    assert of_endpoint == set(jobs.values())


def test_unhappy_child_names(ml_client: Any, cli_inproc: Any, jobs: dict[str, str]) -> None:
    missing = cli_inproc("job", "show", "-n", "no-such-job-batchscoring", check=False)
    assert missing.code != 0 and "batchscoring step of job 'no-such-job'" in missing.err
    with pytest.raises(BatchpointError, match="ends in '-batchscoring'"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, job_name="mine-batchscoring",
                                         input=Input(type="uri_folder", path=str(HEART_UNLABELED)))
    with pytest.raises(NotFoundError, match="no-such-job"):
        ml_client.jobs.list(parent_job_name="no-such-job")


def test_parquet_job_ran_in_its_conda_file_environment(jobs: dict[str, str], ml_client: Any, server: Any) -> None:
    """ENVIRONMENT STEP: the deployment's conda file was built into an environment of its own."""
    if importlib.util.find_spec("batchpoint.environments.prepare") is None:
        pytest.skip("batchpoint.environments (issue 11 part A) is absent: the conda file is stored only")
    job = _completed(ml_client, jobs["parquet"])
    phases = [e.message for e in ml_client.jobs.events(job.name) if e.type == "phase"]
    assert any("building environment" in (m or "") for m in phases), phases
    with server.rest() as rest:
        logs = [rest.get(f"/jobs/{job.name}/logs/{name}").text for name in job.log_files]
    prefixes = {line.split("scoring in ", 1)[1].strip() for text in logs for line in text.splitlines()
                if "scoring in " in line}
    assert prefixes and all("/environments/" in p for p in prefixes), prefixes
