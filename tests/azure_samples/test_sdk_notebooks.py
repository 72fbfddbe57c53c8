"""Azure's batch samples in their SDK form: notebooks in the shape of
``sdk/python/endpoints/batch/deploy-models/heart-classifier-mlflow/mlflow-for-batch-tabular.ipynb`` and
``custom-outputs-parquet/custom-output-batch.ipynb`` (cells written here, same calls and objects),
run cell by cell by ``notebook_runner.py`` with only ``azure.ai.ml`` imports mapped to ``batchpoint``.
``DefaultAzureCredential()`` stays: it finds Batchpoint's managed-identity endpoint through
``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, as ``batchpoint azure-env`` exports them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import HEART_UNLABELED, ServerHandle

from .conftest import PINS
from .notebook_runner import run_notebook
from .sample_files import MLFLOW_DRIVER, PARQUET_DRIVER, conda_file, notebook

IMPORTS = """\
from azure.ai.ml import MLClient, Input
from azure.ai.ml.entities import (
    BatchEndpoint,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
    Model,
    AmlCompute,
    Data,
    BatchRetrySettings,
    CodeConfiguration,
    Environment,
)
from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
from azure.identity import DefaultAzureCredential
"""

CLIENT = """\
subscription_id = "<SUBSCRIPTION_ID>"
resource_group = "<RESOURCE_GROUP>"
workspace = "<AML_WORKSPACE_NAME>"
ml_client = MLClient(DefaultAzureCredential(), subscription_id, resource_group, workspace)
"""

ENDPOINT = """\
import random
import string

endpoint_name = "{name}-" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
endpoint = BatchEndpoint(name=endpoint_name, description="A heart condition classifier for batch inference")
ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
"""

COMPUTE = """\
compute_name = "batch-cluster"
if not any(filter(lambda m: m.name == compute_name, ml_client.compute.list())):
    compute_cluster = AmlCompute(name=compute_name, description="amlcompute", min_instances=0, max_instances=5)
    ml_client.begin_create_or_update(compute_cluster).result()
"""

RUN_AND_DOWNLOAD = """\
ml_client.jobs.get(job.name)
ml_client.jobs.stream(job.name)
scoring_job = list(ml_client.jobs.list(parent_job_name=job.name))[0]
print("Job name:", scoring_job.name)
print("Job status:", scoring_job.status)
print("Job duration:", scoring_job.creation_context.last_modified_at - scoring_job.creation_context.created_at)
ml_client.jobs.download(name=scoring_job.name, download_path="{folder}", output_name="score")
"""


@pytest.fixture()
def azure_env(samples_server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``batchpoint azure-env`` exports for ``DefaultAzureCredential``, and the server's URL."""
    key = (samples_server.home / "owner.key").read_text().strip()
    monkeypatch.setenv("BATCHPOINT_SERVER_URL", samples_server.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{samples_server.url}/azure/identity/token")
    monkeypatch.setenv("IDENTITY_HEADER", key)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                 "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("azure_env")
def test_mlflow_for_batch_tabular_notebook(heart_models: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "heart-classifier-mlflow"
    shutil.copytree(heart_models["mlflow"], folder / "model")
    shutil.copytree(HEART_UNLABELED, folder / "data")
    (folder / "code").mkdir()
    (folder / "environment").mkdir()
    (folder / "environment" / "conda.yaml").write_text(conda_file(PINS))
    settings = """\
    settings=ModelBatchDeploymentSettings(
        instance_count=2,
        max_concurrency_per_instance=1,
        mini_batch_size=10,
        output_action=BatchDeploymentOutputAction.APPEND_ROW,
        output_file_name="predictions.csv",
        retry_settings=BatchRetrySettings(max_retries=3, timeout=300),
        logging_level="info",
    ),
"""
    cells = [
        IMPORTS, CLIENT,
        'model_name = "heart-classifier-mlflow"\n'
        'model = ml_client.models.create_or_update(Model(name=model_name, path="model", type=AssetTypes.MLFLOW_MODEL))\n'
        'model = ml_client.models.get(name=model_name, label="latest")\n',
        ENDPOINT.format(name="heart-classifier"), COMPUTE,
        'deployment = ModelBatchDeployment(\n    name="classifier-xgboost",\n'
        '    description="A heart condition classifier based on XGBoost",\n    endpoint_name=endpoint.name,\n'
        '    model=model,\n    compute=compute_name,\n' + settings + ')\n'
        'ml_client.batch_deployments.begin_create_or_update(deployment).result()\n',
        'endpoint = ml_client.batch_endpoints.get(endpoint.name)\n'
        'endpoint.defaults.deployment_name = deployment.name\n'
        'ml_client.batch_endpoints.begin_create_or_update(endpoint).result()\n'
        'print(f"The default deployment is {endpoint.defaults.deployment_name}")\n',
        'dataset_name = "heart-dataset-unlabeled"\n'
        'ml_client.data.create_or_update(Data(path="data", type=AssetTypes.URI_FOLDER, '
        'description="An unlabeled dataset for heart classification", name=dataset_name))\n'
        'heart_dataset_unlabeled = ml_client.data.get(name=dataset_name, label="latest")\n'
        'input = Input(type=AssetTypes.URI_FOLDER, path=heart_dataset_unlabeled.id)\n',
        'job = ml_client.batch_endpoints.invoke(deployment_name=deployment.name, endpoint_name=endpoint.name, '
        'input=input)\n',
        RUN_AND_DOWNLOAD.format(folder="simple"),
        'import pandas as pd\n'
        'score = pd.read_csv("simple/named-outputs/score/predictions.csv", names=["row", "prediction", "file"])\n',
        "%%writefile code/batch_driver.py\n" + MLFLOW_DRIVER,
        'environment = Environment(name="batch-mlflow-xgboost", conda_file="environment/conda.yaml",\n'
        '                          image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest")\n'
        'deployment = ModelBatchDeployment(\n    name="classifier-xgboost-custom",\n'
        '    description="A heart condition classifier based on XGBoost with a custom scoring script",\n'
        '    endpoint_name=endpoint.name,\n    model=model,\n    environment=environment,\n'
        '    code_configuration=CodeConfiguration(code="code", scoring_script="batch_driver.py"),\n'
        '    compute=compute_name,\n' + settings + ')\n'
        'ml_client.batch_deployments.begin_create_or_update(deployment).result()\n',
        'job = ml_client.batch_endpoints.invoke(deployment_name=deployment.name, endpoint_name=endpoint.name, '
        'input=input)\n',
        RUN_AND_DOWNLOAD.format(folder="custom"),
        'custom = pd.read_csv("custom/named-outputs/score/predictions.csv", sep=" ", header=None)\n',
        "ml_client.batch_endpoints.begin_delete(endpoint_name).result()\n",
    ]
    run = run_notebook(notebook(folder / "mlflow-for-batch-tabular.ipynb", cells))
    assert run.written == ["code/batch_driver.py"] and not run.skipped_lines
    expected = heart_models["expected"]
    score = run.namespace["score"]
    assert len(score) == 303
    for file, rows in score.groupby("file"):
        assert rows.sort_values("row")["prediction"].tolist() == expected[file], file
    custom = run.namespace["custom"]
    assert len(custom) == 303
    for file, rows in custom.groupby(custom.columns[-2]):
        assert rows[custom.columns[-1]].tolist() == expected[file], file
    assert run.namespace["scoring_job"].name.endswith("-batchscoring")


@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("azure_env")
def test_custom_output_batch_notebook(heart_models: dict[str, Any], tmp_path: Path) -> None:
    # the notebook reads its input from <repo>/assets/batch-endpoints-data/custom-output, five folders up
    repo = tmp_path / "azureml-examples"
    folder = repo / "sdk" / "python" / "endpoints" / "batch" / "deploy-models" / "custom-outputs-parquet"
    folder.mkdir(parents=True)
    shutil.copytree(HEART_UNLABELED, repo / "assets" / "batch-endpoints-data" / "custom-output")
    shutil.copytree(heart_models["pickled"], folder / "model")
    (folder / "code").mkdir()
    (folder / "environment").mkdir()
    (folder / "environment" / "conda.yaml").write_text(conda_file(PINS + ["pyarrow==15.0.0"]))
    cells = [
        "from time import sleep\n" + IMPORTS, CLIENT,
        'model_name = "heart-classifier-sklpipe"\n'
        'model = ml_client.models.create_or_update(Model(name=model_name, path="model", '
        'type=AssetTypes.CUSTOM_MODEL, tags={"framework": "scikit-learn", "estimator": "xgboost"}))\n'
        'model = ml_client.models.get(name=model_name, label="latest")\n',
        ENDPOINT.format(name="heart-classifier-custom"),
        "%%writefile code/batch_driver.py\n" + PARQUET_DRIVER,
        COMPUTE,
        'environment = Environment(name="batch-mlflow-xgboost", conda_file="environment/conda.yaml",\n'
        '                          image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")\n'
        'deployment = ModelBatchDeployment(\n    name="classifier-xgboost-custom",\n'
        '    description="A heart condition classifier based on XGBoost which writes outputs in parquet format.",\n'
        '    endpoint_name=endpoint.name,\n    model=model,\n    environment=environment,\n'
        '    code_configuration=CodeConfiguration(code="code", scoring_script="batch_driver.py"),\n'
        '    compute=compute_name,\n'
        '    settings=ModelBatchDeploymentSettings(\n        mini_batch_size=2,\n        instance_count=2,\n'
        '        max_concurrency_per_instance=1,\n        output_action=BatchDeploymentOutputAction.SUMMARY_ONLY,\n'
        '        retry_settings=BatchRetrySettings(max_retries=3, timeout=300),\n        logging_level="info",\n'
        '    ),\n)\n'
        'ml_client.batch_deployments.begin_create_or_update(deployment).result()\n',
        'endpoint = ml_client.batch_endpoints.get(endpoint_name)\n'
        'endpoint.defaults.deployment_name = deployment.name\n'
        'ml_client.batch_endpoints.begin_create_or_update(endpoint).result()\n',
        'from pathlib import Path\n\nrepo_root = Path.cwd().resolve().parents[5]\n'
        'asset_path = repo_root / "assets/batch-endpoints-data/custom-output"\n'
        'input = Input(type=AssetTypes.URI_FOLDER, path=asset_path)\n',
        'job = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, deployment_name=deployment.name, '
        'input=input)\n',
        RUN_AND_DOWNLOAD.format(folder="."),
        'import pandas as pd\nimport glob\n\n'
        'output_files = glob.glob("named-outputs/score/*.parquet")\n'
        'score = pd.concat((pd.read_parquet(f) for f in output_files))\n',
        "ml_client.batch_endpoints.begin_delete(endpoint_name).result()\n",
    ]
    run = run_notebook(notebook(folder / "custom-output-batch.ipynb", cells))
    assert run.written == ["code/batch_driver.py"]
    score = run.namespace["score"]
    assert len(score) == 303
    out = folder / "named-outputs" / "score"
    for file, predictions in heart_models["expected"].items():
        assert pd.read_parquet(out / f"{Path(file).stem}.parquet")["prediction"].tolist() == predictions, file
