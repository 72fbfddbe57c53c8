"""Small things a new user meets, each named as the interface the user is in (issue: what a new
user and a fuzzer hit, item 12)."""

from __future__ import annotations

import httpx
import pytest

from batchpoint import Data, Input, Output
from batchpoint.exceptions import InputError
from conftest import HEART_UNLABELED, deploy_heart, wait_job
from fixtures.inproc_cli import run_cli

ENDPOINT = "wording-ep"


@pytest.fixture(scope="module")
def data(ml_client, heart_model_dir):
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=4)
    return ml_client.data.create_or_update(Data(name="wording-data", path=str(HEART_UNLABELED), type="uri_folder"))


def test_garbage_api_key_is_called_not_an_api_key(server):
    for garbage in ("garbage", "Bearer", "sk-123"):
        response = httpx.get(f"{server.url}/workspace", headers={"Authorization": f"Bearer {garbage}"})
        assert response.status_code == 401
        message = response.json()["error"]["message"]
        assert "not a Batchpoint API key" in message and "bpk_" in message and "malformed token" not in message
    env = {**server.env, "BATCHPOINT_SERVER_URL": server.url, "BATCHPOINT_API_KEY": "garbage"}
    code, _, err = run_cli(env, "workspace", "show")  # the CLI in this process (fixtures/inproc_cli.py)
    assert code != 0 and "not a Batchpoint API key" in err and "Traceback" not in err


@pytest.mark.parametrize(("uri", "says"), [(123, "must be a non-empty string (got int"), (None, "needs a 'Uri'"),
                                           (["a"], "must be a non-empty string (got list")])
def test_uri_of_the_wrong_type_is_named(server, data, uri, says):
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder"} | ({} if uri is None else {"Uri": uri})}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400 and says in response.json()["error"]["message"], response.text


def test_an_output_not_named_score_is_refused(server, data):
    body = {"properties": {"InputData": {"x": {"Uri": data.id}},
                           "OutputData": {"results": {"JobOutputType": "UriFolder",
                                                      "Uri": "azureml://datastores/workspaceblobstore/paths/out"}}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
    assert "'results'" in response.json()["error"]["message"] and "'score'" in response.json()["error"]["message"]


def test_sdk_invoke_takes_outputs_as_azure_ai_ml_does(ml_client, data, tmp_path):
    folder = f"wording-out/{tmp_path.name}"
    job = ml_client.batch_endpoints.invoke(
        endpoint_name=ENDPOINT, input=Input(path=data.id),
        outputs={"score": Output(type="uri_file", path=f"azureml://datastores/workspaceblobstore/paths/{folder}/s.csv")})
    assert job.outputs["score"].path.endswith(folder) and job.outputs["score"].file_name == "s.csv"
    assert wait_job(ml_client, job.name).status == "Completed"
    with pytest.raises(InputError, match="one output, named 'score'"):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=data.id),
                                         outputs={"predictions": Output(path="azureml://datastores/x/paths/y")})


def test_data_version_may_be_a_number():
    assert Data(name="v", version=1, path="azureml://datastores/workspaceblobstore/paths/x").version == "1"


def test_scoring_uri_is_a_full_url_of_the_server(server, ml_client, data):
    endpoint = ml_client.batch_endpoints.get(ENDPOINT)
    assert endpoint.scoring_uri == f"{server.url}/batchEndpoints/{ENDPOINT}/invoke"
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": data.id}}}}
    response = httpx.post(endpoint.scoring_uri, json=body, headers=server.auth_headers(), timeout=60)
    assert response.status_code == 202, response.text  # what `curl -X POST $SCORING_URI` does


def test_cli_input_still_in_json_quotes(cli_inproc, ml_client, data):
    """``--query id`` without ``-o tsv`` prints the id in JSON quotes; invoke takes it as it is."""
    quoted = cli_inproc("data", "show", "-n", "wording-data", "--query", "id").out.strip()
    assert quoted.startswith('"/subscriptions/')
    job = cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "--input", quoted, "--query", "name", "-o", "tsv").out.strip()
    assert wait_job(ml_client, job).status == "Completed"


def test_private_url_refusal_names_the_server_setting(server, data):
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder",
                                               "Uri": "https://127.0.0.2/container/folder"}}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
    assert "BATCHPOINT_STORAGE__ALLOW_PRIVATE_HOSTS" in response.json()["error"]["message"]


def test_a_type_mismatch_names_the_parameter_of_every_interface(server, data):
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFile", "Uri": data.id}}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "disagrees" in message
    assert "--input-type uri_folder" in message and "Input(type='uri_folder')" in message
    assert '"JobInputType": "UriFolder"' in message, message
