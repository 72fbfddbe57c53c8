"""Unchanged azure-ai-ml code, as an Azure ML user writes it: run in its own process by the tests
with the environment ``batchpoint azure-env`` prints. Nothing here knows about Batchpoint.

``python client_flow.py <step> [args]`` prints one JSON document on its last line.
"""

from __future__ import annotations

import json
import sys
import time

from azure.ai.ml import Input, MLClient
from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
from azure.ai.ml.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    BatchRetrySettings,
    CodeConfiguration,
    Data,
    Environment,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
)
from azure.identity import DefaultAzureCredential

ENDPOINT = "heart-classifier-batch"
DATA_PATH = "azureml://datastores/workspaceblobstore/paths/heart/data"
MODEL_PATH = "azureml://datastores/workspaceblobstore/paths/models/heart-classifier"


def client() -> MLClient:
    return MLClient(DefaultAzureCredential(), "11111111-2222-3333-4444-555555555555", "my-rg", "my-workspace")


def deploy(ml: MLClient) -> dict:
    default = ml.datastores.get_default()
    ml.compute.begin_create_or_update(AmlCompute(name="batch-cluster", size="STANDARD_DS3_V2", min_instances=0,
                                                 max_instances=2)).result()
    compute = ml.compute.get("batch-cluster")
    model = ml.models.create_or_update(Model(name="heart-classifier", path=MODEL_PATH, type=AssetTypes.MLFLOW_MODEL))
    data = ml.data.create_or_update(Data(name="heart-unlabeled", path=DATA_PATH, type=AssetTypes.URI_FOLDER))
    ml.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT, description="heart")).result()
    deployment = ModelBatchDeployment(
        name="classifier-mlflow", endpoint_name=ENDPOINT, model=model, compute="batch-cluster",
        settings=ModelBatchDeploymentSettings(
            max_concurrency_per_instance=2, mini_batch_size=2, instance_count=1,
            output_action=BatchDeploymentOutputAction.APPEND_ROW, output_file_name="predictions.csv",
            retry_settings=BatchRetrySettings(max_retries=2, timeout=300), logging_level="info"))
    ml.batch_deployments.begin_create_or_update(deployment).result()
    endpoint = ml.batch_endpoints.get(ENDPOINT)
    endpoint.defaults.deployment_name = "classifier-mlflow"
    ml.batch_endpoints.begin_create_or_update(endpoint).result()
    endpoint = ml.batch_endpoints.get(ENDPOINT)
    return {"default_datastore": default.name, "datastore_type": default.type, "compute": compute.name,
            "compute_max": compute.max_instances, "model": f"{model.name}:{model.version}",
            "data": f"{data.name}:{data.version}", "default_deployment": endpoint.defaults.deployment_name,
            "deployments": [d.name for d in ml.batch_deployments.list(endpoint_name=ENDPOINT)]}


def invoke(ml: MLClient, how: str, list_jobs: bool = True) -> dict:
    path = {"datastore": DATA_PATH, "asset": "azureml:heart-unlabeled:1"}.get(how, how)  # else: a storage URL
    job = ml.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=AssetTypes.URI_FOLDER, path=path))
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        status = ml.jobs.get(job.name).status
        if status in ("Completed", "Failed", "Canceled"):
            break
        time.sleep(0.2)
    if not list_jobs:
        return {"job": job.name, "status": status}
    listed = [j.name for j in ml.batch_endpoints.list_jobs(endpoint_name=ENDPOINT)]
    return {"job": job.name, "status": status, "listed": job.name in listed}


def upload(ml: MLClient, model_dir: str, data_dir: str) -> dict:
    """Model and data from local folders: the client uploads them to the default data store."""
    model = ml.models.create_or_update(Model(name="heart-local", path=model_dir, type=AssetTypes.MLFLOW_MODEL))
    data = ml.data.create_or_update(Data(name="heart-local-data", path=data_dir, type=AssetTypes.URI_FOLDER))
    again = ml.data.create_or_update(Data(name="heart-local-data", path=data_dir, type=AssetTypes.URI_FOLDER))
    ml.batch_deployments.begin_create_or_update(ModelBatchDeployment(
        name="uploaded-model", endpoint_name=ENDPOINT, model=model, compute="batch-cluster",
        settings=ModelBatchDeploymentSettings(mini_batch_size=2, instance_count=1))).result()
    job = ml.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="uploaded-model",
                                    input=Input(type=AssetTypes.URI_FOLDER, path=f"azureml:{data.name}:{data.version}"))
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        status = ml.jobs.get(job.name).status
        if status in ("Completed", "Failed", "Canceled"):
            break
        time.sleep(0.2)
    return {"model": f"{model.name}:{model.version}", "model_path": model.path, "data": f"{data.name}:{data.version}",
            "data_path": data.path, "again": f"{again.name}:{again.version}", "again_path": again.path,
            "job": job.name, "status": status}


def script(ml: MLClient, code_dir: str) -> dict:
    """A scoring-script deployment: code from a local folder, an environment from a conda file."""
    environment = Environment(name="score-env", image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
                              conda_file={"name": "score", "dependencies": ["python=3.11", {"pip": ["pandas"]}]})
    deployment = BatchDeployment(
        name="script", endpoint_name=ENDPOINT, model="azureml:heart-classifier:1", environment=environment,
        code_configuration=CodeConfiguration(code=code_dir, scoring_script="score.py"), compute="batch-cluster",
        instance_count=1, mini_batch_size=2)
    ml.batch_deployments.begin_create_or_update(deployment).result()
    ml.batch_deployments.begin_create_or_update(deployment).result()  # the same code again: found by its hash
    job = ml.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="script",
                                    input=Input(type=AssetTypes.URI_FOLDER, path=DATA_PATH))
    deadline = time.monotonic() + 400
    status = None
    while time.monotonic() < deadline:
        status = ml.jobs.get(job.name).status
        if status in ("Completed", "Failed", "Canceled"):
            break
        time.sleep(0.2)
    return {"job": job.name, "status": status}


def stream(ml: MLClient, code_dir: str, gate: str):
    """A scoring script that holds its mini-batch until the caller opens the gate (a file), so the
    job is still running when ``jobs.stream`` starts following it, however fast the machine."""
    ml.batch_deployments.begin_create_or_update(BatchDeployment(
        name="stream-gated", endpoint_name=ENDPOINT, model="azureml:heart-classifier:1", compute="batch-cluster",
        code_configuration=CodeConfiguration(code=code_dir, scoring_script="score.py"), instance_count=1,
        mini_batch_size=10, environment_variables={"STREAM_GATE": gate})).result()
    job = ml.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="stream-gated",
                                    input=Input(type=AssetTypes.URI_FOLDER, path=DATA_PATH))
    ml.jobs.stream(job.name)
    return job


def main() -> None:
    step = sys.argv[1]
    ml = client()
    if step == "deploy":
        out = deploy(ml)
    elif step == "invoke":
        out = invoke(ml, sys.argv[2])
    elif step == "invoke-only":  # what a key with Invoker on this endpoint alone can do
        out = invoke(ml, sys.argv[2], list_jobs=False)
    elif step == "stream":  # invoke, then follow the job as it runs
        job = stream(ml, sys.argv[2], sys.argv[3])
        out = {"job": job.name, "status": ml.jobs.get(job.name).status}
    elif step == "download":
        ml.jobs.download(sys.argv[2], download_path=sys.argv[3], output_name="score")
        out = {"downloaded": sys.argv[2]}
    elif step == "script":
        out = script(ml, sys.argv[2])
    elif step == "upload":
        out = upload(ml, sys.argv[2], sys.argv[3])
    elif step == "create-endpoint":
        ml.batch_endpoints.begin_create_or_update(BatchEndpoint(name=sys.argv[2])).result()
        out = {"created": sys.argv[2]}
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
