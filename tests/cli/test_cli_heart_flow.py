"""Acceptance 1: the heart flow of the Azure ML batch endpoint tutorial, through the real
``batchpoint`` command line, from model registration to the downloaded predictions.

The tutorial itself and ``job stream`` run the console script (a new process per command); the
checks of the other verbs, formats and refused specs run the same CLI in this process
(``cli_inproc``, ``fixtures/inproc_cli.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchpoint.exceptions import NotFoundError
from conftest import HEART_ROWS, HEART_UNLABELED, wait_job
from fixtures.flows import expected_rows, predictions_of, write_yaml

ENDPOINT = "heart-cli"
DEPLOYMENT = "classifier-xgboost"


@pytest.fixture(scope="module")
def heart_cli(cli: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything the tutorial creates before invoking, created with the CLI from YAML files."""
    specs = tmp_path_factory.mktemp("heart-cli-specs")
    cli("model", "create", "--name", "heart-classifier", "--type", "mlflow_model", "--path", str(heart_model_dir))
    write_yaml(specs / "heart-dataset-unlabeled.yml", {
        "$schema": "https://azuremlschemas.azureedge.net/latest/data.schema.json",
        "name": "heart-dataset-unlabeled",
        "description": "An unlabeled dataset for heart classification.",
        "type": "uri_folder",
        "path": os.path.relpath(HEART_UNLABELED, specs),  # relative to the YAML file, as in az ml
    })
    cli("data", "create", "-f", str(specs / "heart-dataset-unlabeled.yml"))
    cli("compute", "create", "-n", "batch-cluster", "--type", "amlcompute", "--min-instances", "0",
        "--max-instances", "5")
    write_yaml(specs / "endpoint.yml", {
        "$schema": "https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json",
        "name": ENDPOINT,
        "description": "A heart condition classifier for batch inference",
        "auth_mode": "aad_token",
    })
    cli("batch-endpoint", "create", "-f", str(specs / "endpoint.yml"))
    write_yaml(specs / "deployment.yml", {
        "$schema": "https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json",
        "endpoint_name": ENDPOINT,
        "name": DEPLOYMENT,
        "description": "A heart condition classifier based on XGBoost",
        "type": "model",
        "model": "azureml:heart-classifier@latest",
        "compute": "azureml:batch-cluster",
        "resources": {"instance_count": 2},
        "settings": {
            "max_concurrency_per_instance": 2,
            "mini_batch_size": 2,
            "output_action": "append_row",
            "output_file_name": "predictions.csv",
            "retry_settings": {"max_retries": 3, "timeout": 300},
            "error_threshold": -1,
            "logging_level": "info",
        },
    })
    cli("batch-deployment", "create", "-f", str(specs / "deployment.yml"), "--set-default")
    return specs


def test_heart_flow_through_cli(cli: Any, ml_client: Any, heart_cli: Path, heart_model_dir: Path,
                                tmp_path: Path) -> None:
    shown = cli("batch-endpoint", "show", "-n", ENDPOINT, "--query", "defaults.deployment_name", "-o", "tsv")
    assert shown.out.strip() == DEPLOYMENT

    result = cli("batch-endpoint", "invoke", "--name", ENDPOINT, "--input", "azureml:heart-dataset-unlabeled@latest",
                 "--query", "name", "-o", "tsv")
    job_name = result.out.strip()
    assert job_name and "\n" not in job_name and " " not in job_name, result.out

    job = wait_job(ml_client, job_name)
    assert job.status == "Completed", (job.status_message, job.error, job.failures)
    status = cli("job", "show", "-n", job_name, "--query", "status", "-o", "tsv")
    assert status.out == "Completed\n"
    assert job.progress.rows == HEART_ROWS
    assert job.progress.files_completed == 4 and job.progress.files_failed == 0
    assert job.progress.mini_batches_total == 2  # 4 files, mini_batch_size 2
    assert job.deployment_name == DEPLOYMENT

    cli("job", "download", "-n", job_name, "--output-name", "score", "--download-path", str(tmp_path))
    predictions = tmp_path / "named-outputs" / "score" / "predictions.csv"
    assert predictions.is_file(), sorted(str(p) for p in tmp_path.rglob("*"))
    got = predictions_of(predictions)
    assert len(got) == HEART_ROWS
    assert got == expected_rows(heart_model_dir)


# ---- the other verbs and formats, on the same endpoint ------------------------------------------


@pytest.fixture(scope="module")
def cli_job(cli: Any, heart_cli: Path) -> str:
    """A job started on the tutorial endpoint (not waited for)."""
    return cli("batch-endpoint", "invoke", "-n", ENDPOINT, "-i", "azureml:heart-dataset-unlabeled@latest",
               "--query", "name", "-o", "tsv").out.strip()


def test_job_stream_follows_the_job_to_its_end(cli: Any, cli_job: str) -> None:
    result = cli("job", "stream", "-n", cli_job, "--logs")  # the worker log lines come with --logs
    assert result.code == 0
    lines = result.out.splitlines()
    assert "[Completed] all mini-batches scored" in lines, result.out
    assert any(line.startswith("worker-") and "scored" in line for line in lines), result.out
    assert lines[-1] == f"Job {cli_job} Completed: 4 files scored, 0 failed, {HEART_ROWS} rows"


def test_list_jobs_of_the_endpoint(cli_inproc: Any, cli_job: str) -> None:
    names = cli_inproc("batch-endpoint", "list-jobs", "-n", ENDPOINT, "--query", "[].name", "-o", "tsv").out.split()
    assert cli_job in names
    listed = json.loads(cli_inproc("batch-endpoint", "list-jobs", "-n", ENDPOINT).out)
    assert {j["endpoint_name"] for j in listed} == {ENDPOINT}
    by_deployment = cli_inproc("batch-deployment", "list-jobs", "-n", DEPLOYMENT, "-e", ENDPOINT, "--query", "[].name",
                        "-o", "tsv").out.split()
    assert cli_job in by_deployment


def test_output_formats_and_query(cli_inproc: Any, heart_cli: Path) -> None:
    as_json = json.loads(cli_inproc("batch-endpoint", "show", "-n", ENDPOINT).out)
    assert as_json["name"] == ENDPOINT and as_json["auth_mode"] == "aad_token"
    as_yaml = yaml.safe_load(cli_inproc("batch-endpoint", "show", "-n", ENDPOINT, "-o", "yaml").out)
    assert as_yaml == as_json
    table = cli_inproc("batch-endpoint", "list", "-o", "table").out.splitlines()
    assert {"name", "auth_mode", "scoring_uri"} <= set(table[0].split()), table[0]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert any(ENDPOINT in row.split() for row in table[2:])
    names = cli_inproc("batch-endpoint", "list", "--query", "[].name", "-o", "tsv").out.splitlines()
    assert ENDPOINT in names
    size = cli_inproc("batch-deployment", "show", "-n", DEPLOYMENT, "-e", ENDPOINT, "--query",
               "settings.retry_settings.timeout", "-o", "tsv")
    assert size.out == "300\n"
    pair = cli_inproc("batch-deployment", "show", "-n", DEPLOYMENT, "-e", ENDPOINT, "--query",
               "[name, resources.instance_count]", "-o", "tsv")
    assert pair.out.split() == [DEPLOYMENT, "2"]
    bad = cli_inproc("batch-endpoint", "show", "-n", ENDPOINT, "--query", "[name", check=False)
    assert bad.code != 0 and "--query" in bad.err and "Traceback" not in bad.err


def test_deployment_update_with_set(cli_inproc: Any, ml_client: Any, heart_cli: Path) -> None:
    spec = yaml.safe_load((heart_cli / "deployment.yml").read_text())
    spec["name"] = "tuned"
    write_yaml(heart_cli / "tuned.yml", spec)
    cli_inproc("batch-deployment", "create", "-f", str(heart_cli / "tuned.yml"))
    updated = json.loads(cli_inproc("batch-deployment", "update", "-n", "tuned", "-e", ENDPOINT,
                             "--set", "settings.mini_batch_size=3").out)
    assert updated["settings"]["mini_batch_size"] == 3
    shown = ml_client.batch_deployments.get("tuned", ENDPOINT)
    assert shown.settings.mini_batch_size == 3
    assert shown.settings.max_concurrency_per_instance == 2  # the rest of settings is kept
    assert shown.settings.retry_settings.timeout == 300
    assert shown.resources.instance_count == 2
    assert ml_client.batch_endpoints.get(ENDPOINT).defaults["deployment_name"] == DEPLOYMENT  # not made default
    name = cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "-d", "tuned", "-i", "azureml:heart-dataset-unlabeled@latest",
               "--query", "name", "-o", "tsv").out.strip()
    job = wait_job(ml_client, name)
    assert job.status == "Completed", job.status_message
    assert job.deployment_name == "tuned"
    assert job.progress.mini_batches_total == 2 and job.progress.rows == HEART_ROWS  # 4 files by 3


@pytest.mark.parametrize(("where", "field"), [
    ("settings", "mini_batch_sise"),
    ("top", "endpoint_nam"),
    ("retry", "max_retry"),
])
def test_yaml_spec_with_a_mistyped_field(cli_inproc: Any, ml_client: Any, heart_cli: Path, where: str, field: str) -> None:
    spec = yaml.safe_load((heart_cli / "deployment.yml").read_text())
    spec["name"] = "typo"
    target = {"settings": spec["settings"], "top": spec, "retry": spec["settings"]["retry_settings"]}[where]
    target[field] = 5
    path = write_yaml(heart_cli / f"typo-{field}.yml", spec)
    result = cli_inproc("batch-deployment", "create", "-f", str(path), check=False)
    assert result.code == 1, result
    (line,) = [x for x in result.err.splitlines() if x.startswith("ERROR:")]
    assert field in line and str(path) in line and "unknown field" in line, line
    with pytest.raises(NotFoundError):
        ml_client.batch_deployments.get("typo", ENDPOINT)


def test_yaml_spec_with_a_wrong_value(cli_inproc: Any, heart_cli: Path) -> None:
    spec = yaml.safe_load((heart_cli / "deployment.yml").read_text())
    spec["name"] = "wrong-value"
    spec["settings"]["output_action"] = "append_rows"
    path = write_yaml(heart_cli / "wrong-value.yml", spec)
    result = cli_inproc("batch-deployment", "create", "-f", str(path), check=False)
    assert result.code == 1
    assert "settings.output_action" in result.err and str(path) in result.err and "append_row" in result.err


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system",
                                 "!!python/object:collections.OrderedDict"])
def test_yaml_spec_tags_that_build_objects_are_refused(cli_inproc: Any, heart_cli: Path, tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    spec = heart_cli / "tagged.yml"
    spec.write_text(f"name: tagged-endpoint\ndescription: {tag} [\"touch {marker}\"]\n")
    result = cli_inproc("batch-endpoint", "create", "-f", str(spec), check=False)
    assert result.code == 1, result
    assert result.err.startswith("ERROR:") and str(spec) in result.err and "tags" in result.err, result.err
    assert not marker.exists()
    assert cli_inproc("batch-endpoint", "show", "-n", "tagged-endpoint", check=False).code == 1


def test_openapi_is_served(server: Any) -> None:
    with server.rest() as rest:
        response = rest.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "Batchpoint"
    for path in ("/batchEndpoints/{name}/invoke", "/batchEndpoints/{endpoint}/deployments/{name}", "/jobs/{name}",
                 "/data/{name}/versions", "/datastores/{name}"):
        assert path in doc["paths"], sorted(doc["paths"])
