"""The SDK in the shapes of Azure's batch notebooks (``sdk/python/endpoints/batch/deploy-models/*``
of Azure/azureml-examples), against a real server: a compute by ``MLClient.begin_create_or_update``,
an endpoint, a ``ModelBatchDeployment`` with ``ModelBatchDeploymentSettings`` (``instance_count``
inside), the default deployment set by attribute, a data asset's id as the input, an invoke with
``params_override``, the child job found with ``jobs.list(parent_job_name=...)`` and its output
downloaded by the child's name (SDK and CLI), predictions checked against the heart model's own.

The code is written here in the notebooks' shape, not copied from them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import HEART_UNLABELED, expected_predictions

ENDPOINT = "heart-nb-shapes"
COMPUTE = "batch-cluster-nb"


@pytest.fixture(scope="module")
def notebook_job(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from batchpoint import (
        AmlCompute, BatchEndpoint, BatchRetrySettings, Data, Input, Model, ModelBatchDeployment,
        ModelBatchDeploymentSettings,
    )
    from batchpoint.constants import AssetTypes, BatchDeploymentOutputAction

    if not any(filter(lambda c: c.name == COMPUTE, ml_client.compute.list())):
        cluster = AmlCompute(name=COMPUTE, description="amlcompute", min_instances=0, max_instances=3)
        ml_client.begin_create_or_update(cluster).result()
    model = ml_client.models.create_or_update(
        Model(name="heart-classifier-nb", path=heart_model_dir, type=AssetTypes.MLFLOW_MODEL))  # a Path
    model = ml_client.models.get(name=model.name, label="latest")
    endpoint = BatchEndpoint(name=ENDPOINT, description="heart classifier, notebook shapes")
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    deployment = ModelBatchDeployment(
        name="classifier-nb",
        description="the heart model with no scoring script",
        endpoint_name=endpoint.name,
        model=model,
        compute=COMPUTE,
        env_manager="local",  # Batchpoint's: the server's environment, no build in the test
        settings=ModelBatchDeploymentSettings(
            instance_count=2,
            max_concurrency_per_instance=1,
            mini_batch_size=10,
            output_action=BatchDeploymentOutputAction.APPEND_ROW,
            output_file_name="predictions.csv",
            retry_settings=BatchRetrySettings(max_retries=2, timeout=300),
            logging_level="info",
        ),
    )
    ml_client.begin_create_or_update(deployment).result()
    endpoint = ml_client.batch_endpoints.get(endpoint.name)
    endpoint.defaults.deployment_name = deployment.name
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()

    data = Data(path=HEART_UNLABELED, type=AssetTypes.URI_FOLDER, description="unlabeled heart data",
                name="heart-dataset-nb")
    ml_client.data.create_or_update(data)
    data = ml_client.data.get(name="heart-dataset-nb", label="latest")
    batch_ds = ml_client.datastores.get_default()
    job = ml_client.batch_endpoints.invoke(
        endpoint_name=endpoint.name,
        input=Input(type=AssetTypes.URI_FOLDER, path=data.id),
        params_override=[
            {"output_dataset.datastore_id": f"azureml:{batch_ds.id}"},
            {"output_dataset.path": f"/{endpoint.name}/"},
            {"output_file_name": "heart-predictions.csv"},
            {"mini_batch_size": "3"},
            {"compute.instance_count": "1"},
        ],
    )
    streamed = io.StringIO()
    ml_client.jobs.stream(job.name, out=streamed)
    return {"job": job, "deployment": deployment, "datastore": batch_ds, "stream": streamed.getvalue(),
            "cwd": tmp_path_factory.mktemp("notebook")}


def test_deployment_and_endpoint_as_the_notebooks_leave_them(ml_client: Any, notebook_job: dict[str, Any]) -> None:
    shown = ml_client.batch_deployments.get(name="classifier-nb", endpoint_name=ENDPOINT)
    assert shown.resources.instance_count == 2  # ModelBatchDeploymentSettings.instance_count
    assert (shown.settings.mini_batch_size, shown.settings.max_concurrency_per_instance) == (10, 1)
    assert (shown.settings.retry_settings.max_retries, shown.settings.retry_settings.timeout) == (2, 300)
    assert shown.settings.output_file_name == "predictions.csv" and shown.compute == COMPUTE
    endpoint = ml_client.batch_endpoints.get(ENDPOINT)
    assert endpoint.defaults.deployment_name == "classifier-nb" == endpoint.defaults["deployment_name"]
    assert ml_client.compute.get(name=COMPUTE).provisioning_state == "Succeeded"


def test_invoke_params_override_reach_the_job(ml_client: Any, notebook_job: dict[str, Any]) -> None:
    job = ml_client.jobs.get(notebook_job["job"].name)
    assert job.status == "Completed", notebook_job["stream"]
    assert job.deployment_name == "classifier-nb"  # the default set by attribute
    assert (job.settings["mini_batch_size"], job.settings["instance_count"]) == (3, 1)
    score = job.outputs["score"]
    assert score.file_name == "heart-predictions.csv"
    assert score.path.rstrip("/") == f"azureml://datastores/{notebook_job['datastore'].name}/paths/{ENDPOINT}"


def test_child_job_output_downloads_by_its_own_name(ml_client: Any, notebook_job: dict[str, Any],
                                                      heart_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(notebook_job["cwd"])
    job = notebook_job["job"]
    scoring_job = list(ml_client.jobs.list(parent_job_name=job.name))[0]
    assert scoring_job.name != job.name and scoring_job.status == "Completed"
    duration = scoring_job.creation_context.last_modified_at - scoring_job.creation_context.created_at
    assert duration.total_seconds() > 0
    ml_client.jobs.download(name=scoring_job.name, download_path=".", output_name="score")
    score = pd.read_csv("named-outputs/score/heart-predictions.csv", names=["row", "prediction", "file"])
    got = {(r.file, int(r.row)): int(r.prediction) for r in score.itertuples()}
    assert got == expected_predictions(heart_model_dir)


def test_child_job_logs_and_cli_download(ml_client: Any, notebook_job: dict[str, Any], server: Any, cli: Any,
                                         tmp_path: Path) -> None:
    child = list(ml_client.jobs.list(parent_job_name=notebook_job["job"].name))[0].name
    with server.rest() as http:
        parent_logs = http.get(f"/jobs/{notebook_job['job'].name}/logs").json()["logs"]
        logs = http.get(f"/jobs/{child}/logs")
        assert logs.status_code == 200 and logs.json()["logs"] == parent_logs and parent_logs
        first = parent_logs[0]["name"]
        assert http.get(f"/jobs/{child}/logs/{first}").text == http.get(
            f"/jobs/{notebook_job['job'].name}/logs/{first}").text
        events = http.get(f"/jobs/{child}/events").json()
        assert events and events[-1]["status"] == "Completed"
        missing = http.get(f"/jobs/{child}/outputs/nope")
        assert missing.status_code == 404 and f"job '{child}' has no output 'nope'" in missing.json()["error"]["message"]
    # az's unambiguous prefixes: --na for --name, --download for --download-path
    done = cli("job", "download", "--na", child, "--download", str(tmp_path))
    assert (tmp_path / "named-outputs" / "score" / "heart-predictions.csv").is_file(), done.err
    listed = json.loads(cli("batch-deployment", "list", "--endpoint", ENDPOINT).out)
    assert [d["name"] for d in listed] == ["classifier-nb"]


def test_whole_job_verbs_by_a_child_name_name_the_batch_job(ml_client: Any, notebook_job: dict[str, Any]) -> None:
    from batchpoint.exceptions import ValidationError

    parent = notebook_job["job"].name
    child = list(ml_client.jobs.list(parent_job_name=parent))[0].name
    with pytest.raises(ValidationError, match=f"batchscoring step of job '{parent}': cancel that job instead"):
        ml_client.jobs.begin_cancel(child)
    with pytest.raises(ValidationError, match=f"rerun that job instead \\(batchpoint job rerun -n {parent}\\)"):
        ml_client.jobs.rerun(child)


def test_invoke_refusals_name_what_is_valid(ml_client: Any, notebook_job: dict[str, Any]) -> None:
    from batchpoint import Input
    from batchpoint.exceptions import InputError

    data = Input(path=str(HEART_UNLABELED))
    with pytest.raises(InputError, match="not supported; supported: output_dataset.datastore_id"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=data, params_override=[{"resources.gpu": 1}])
    with pytest.raises(InputError, match="together"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=data,
                                         params_override=[{"output_dataset.path": "/x/"}])
    with pytest.raises(InputError, match="whole number"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=data,
                                         params_override=[{"mini_batch_size": "ten"}])
