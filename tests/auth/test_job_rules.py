"""Acceptance (Security 2): who may invoke, who may read which job, and the identity rules."""

from __future__ import annotations

import httpx
import pytest

from batchpoint import BatchDeployment, BatchEndpoint, Data, Model
from batchpoint.exceptions import PermissionDeniedError
from conftest import HEART_UNLABELED

ENDPOINT = "rules-ep"


@pytest.fixture(scope="module")
def setup(server, ml_client, heart_model_dir):
    ml_client.models.create_or_update(Model(name="rules-model", path=str(heart_model_dir), type="mlflow_model"))
    data = ml_client.data.create_or_update(Data(name="rules-data", path=str(HEART_UNLABELED), type="uri_folder"))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="main", endpoint_name=ENDPOINT, model="azureml:rules-model@latest", mini_batch_size=4), set_default=True)
    keys = {}
    for who, role, scope in (("reader", "Reader", "workspace"), ("invoker", "Invoker", f"endpoint:{ENDPOINT}"),
                             ("other", "Invoker", f"endpoint:{ENDPOINT}")):
        pid = f"user:rules-{who}"
        ml_client.principals.create(pid)
        ml_client.role_assignments.create(pid, role, scope)
        keys[who] = ml_client.principals.create_key(pid)["key"]
    return data, keys


def _http(server, key):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _invoke_body(data):
    return {"properties": {"InputData": {"heart": {"JobInputType": "UriFolder", "Uri": data.id}}}}


def test_reader_cannot_invoke(server, setup):
    data, keys = setup
    with _http(server, keys["reader"]) as http:
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_invoke_body(data))
    assert response.status_code == 403
    assert "endpoints/invoke" in response.json()["error"]["message"]


def test_invoker_reads_own_jobs_only(server, ml_client, setup):
    data, keys = setup
    with _http(server, keys["invoker"]) as mine, _http(server, keys["other"]) as other:
        response = mine.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_invoke_body(data))
        assert response.status_code == 202, response.text
        job = response.json()["name"]
        assert mine.get(f"/jobs/{job}").status_code == 200
        assert other.get(f"/jobs/{job}").status_code == 403
        assert job not in [j["name"] for j in other.get("/jobs").json()]
        assert job in [j["name"] for j in mine.get("/jobs").json()]
    final = ml_client.jobs.wait(job)
    assert final.status == "Completed" and final.created_by == "user:rules-invoker"
    with _http(server, keys["reader"]) as reader:
        assert reader.get(f"/jobs/{job}").status_code == 200
    audit = ml_client.audit.list(limit=200)
    invokes = [a for a in audit if a["details"].get("job") == job]
    assert invokes and invokes[0]["principal_id"] == "user:rules-invoker"
    assert invokes[0]["details"]["inputs"]["heart"]["path"] == data.id


def test_identity_store_needs_data_read_and_compute_identity(server, ml_client, setup, azurite_blob_url):
    """A data store without credentials is read with the job's identity: Invoker without data/read → 403
    naming the grant; with it but no compute identity → refused saying what to configure."""
    from batchpoint import AmlCompute, Datastore

    data, keys = setup
    ml_client.compute.begin_create_or_update(AmlCompute(name="no-identity", max_instances=2)).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="oncompute", endpoint_name=ENDPOINT, model="azureml:rules-model@latest", compute="no-identity"))
    ml_client.datastores.create_or_update(Datastore(
        name="identitystore", type="azure_blob", account_name="devstoreaccount1", container_name="nosuchidentity",
        blob_endpoint_url=azurite_blob_url, allow_private_network=True))
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder",
                                                "Uri": "azureml://datastores/identitystore/paths/heart"}},
                           "DeploymentName": "oncompute"}}
    with _http(server, keys["invoker"]) as http:
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 403
    assert "data/read" in response.json()["error"]["message"]
    assert "datastore:identitystore" in response.json()["error"]["message"]
    ml_client.role_assignments.create("user:rules-invoker", "DataReader", "datastore:identitystore")
    with _http(server, keys["invoker"]) as http:
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 403, response.text
    message = response.json()["error"]["message"]
    assert "no-identity" in message and "Storage Blob Data Reader" in message


def test_sdk_raises_permission_denied(server, setup):
    from batchpoint import Input, MLClient
    from batchpoint.sdk.client import StaticKeyCredential

    data, keys = setup
    reader = MLClient(credential=StaticKeyCredential(keys["reader"]), endpoint=server.url, home=server.home)
    with pytest.raises(PermissionDeniedError):
        reader.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=data.id))
