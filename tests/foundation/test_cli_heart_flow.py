"""Acceptance 1: the heart flow of the Azure ML batch endpoint tutorial, through the real
``batchpoint`` command line, from model registration to the downloaded predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, wait_job
from foundation.conftest import expected_rows, predictions_of, write_yaml

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
