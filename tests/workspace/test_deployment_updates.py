"""``batch-deployment update --set a.b.c=v`` changes one field: CLI, SDK and REST PATCH alike.

Reproduces: ``--set settings.retry_settings.max_retries=2`` silently reset ``timeout`` to 30, and
``--set code_configuration.scoring_script=x.py`` failed with "code… Field required" (the nested
object was replaced, not merged).
"""

from __future__ import annotations

from batchpoint import BatchDeployment, CodeConfiguration
from conftest import HEART_UNLABELED, deploy_heart, wait_job
from fixtures.flows import write_script

ENDPOINT = "update-ep"
SCRIPT = '''
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(f)},{TAG}" for f in mini_batch]
'''


def _deploy(ml_client, heart_model_dir, tmp_path):
    deploy_heart(ml_client, ENDPOINT, heart_model_dir)
    code = tmp_path / "code"
    write_script(code, "TAG = 'one'\n" + SCRIPT, "one.py")
    write_script(code, "TAG = 'two'\n" + SCRIPT, "two.py")
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="scripted", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="one.py"),
        settings={"mini_batch_size": 4, "retry_settings": {"max_retries": 3, "timeout": 300}})).result()


def test_cli_set_changes_one_nested_field(cli_inproc, ml_client, heart_model_dir, tmp_path):
    _deploy(ml_client, heart_model_dir, tmp_path)
    cli_inproc("batch-deployment", "update", "-n", "scripted", "-e", ENDPOINT, "--set", "settings.retry_settings.max_retries=2")
    shown = ml_client.batch_deployments.get("scripted", ENDPOINT)
    assert shown.settings.retry_settings.max_retries == 2
    assert shown.settings.retry_settings.timeout == 300  # kept
    assert shown.settings.mini_batch_size == 4
    cli_inproc("batch-deployment", "update", "-n", "scripted", "-e", ENDPOINT, "--set", "code_configuration.scoring_script=two.py")
    shown = ml_client.batch_deployments.get("scripted", ENDPOINT)
    assert shown.code_configuration.scoring_script == "two.py" and shown.code_configuration.code
    job = cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "-d", "scripted", "--input", str(HEART_UNLABELED),
              "--query", "name", "-o", "tsv").out.strip()
    done = wait_job(ml_client, job)
    assert done.status == "Completed", done.error
    out = tmp_path / "out"
    [path] = ml_client.jobs.download(job, download_path=out)
    assert all(line.endswith(",two") for line in path.read_text().split())


def test_sdk_and_rest_patch_merge_too(server, ml_client, heart_model_dir, tmp_path):
    _deploy(ml_client, heart_model_dir, tmp_path)
    ml_client.batch_deployments.update(ENDPOINT, "scripted", {"settings": {"retry_settings": {"timeout": 120}}})
    with server.rest() as rest:
        response = rest.patch(f"/batchEndpoints/{ENDPOINT}/deployments/scripted",
                              json={"settings": {"error_threshold": 5}})
        assert response.status_code == 200, response.text
    shown = ml_client.batch_deployments.get("scripted", ENDPOINT)
    assert shown.settings.retry_settings.timeout == 120 and shown.settings.retry_settings.max_retries == 3
    assert shown.settings.error_threshold == 5 and shown.settings.mini_batch_size == 4
    ml_client.batch_endpoints.update(ENDPOINT, {"tags": {"team": "a"}})
    ml_client.batch_endpoints.update(ENDPOINT, {"tags": {"stage": "b"}})
    endpoint = ml_client.batch_endpoints.get(ENDPOINT)
    assert endpoint.tags == {"team": "a", "stage": "b"} and endpoint.defaults["deployment_name"] == "mlflow"
