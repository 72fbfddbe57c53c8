"""Acceptance (Security 2, Secrets): the spec's credential table, row by row, over data in the
HTTPS Azurite that checks bearer tokens (``--oauth basic``), through a real server.

| input | credential in store | credential used |
|---|---|---|
| data store | yes | the data store's credential (workers: a read-only SAS) |
| data store | no | the job's identity (``data/read``) + the compute's managed identity (a token) |
| storage-account URL | n/a | the job's identity (``data/read`` on the account) + the compute's managed identity |

The compute's managed identity is served the way an Azure ML node serves it (``MSI_ENDPOINT`` /
``MSI_SECRET``, see ``fixtures.identity``); azure-identity fetches the token, and Azurite checks it
on every storage request. A scoring script also looks through its own worker for the account key.
"""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from batchpoint import AmlCompute, BatchDeployment, Datastore, Input, MLClient
from batchpoint.entities import CodeConfiguration
from batchpoint.sdk.client import StaticKeyCredential
from conftest import HEART_UNLABELED, deploy_heart, expected_predictions, record_secret, start_server, stop_server
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME
from fixtures.identity import ManagedIdentityEndpoint

pytestmark = pytest.mark.azurite
ENDPOINT = "credtable"
CLIENT_ID = "9a1c2d3e-0000-4000-8000-00000000c1d0"
CONTAINER = "identitydata"
INVOKER = "user:table-invoker"

INSPECT = '''
import gc, hashlib, os, sys
import pandas as pd

KEY_SHA256 = "{digest}"


def _seen():
    """Whether the account key is anywhere this worker can reach: its environment, or any string
    or dict held by a live object (module globals aside: azure-storage-blob ships Azurite's
    well-known key as DEVSTORE_ACCOUNT_KEY). Dicts of plain strings are not tracked by the
    garbage collector, so they are reached as referents of the objects that hold them."""
    def is_key(value):
        return isinstance(value, str) and len(value) == 88 and hashlib.sha256(value.encode()).hexdigest() == KEY_SHA256

    key = any(is_key(v) for v in os.environ.values())
    kinds = set()
    modules = {{id(vars(m)) for m in list(sys.modules.values()) if m is not None}}
    for obj in gc.get_objects():
        if id(obj) in modules:
            continue
        for ref in gc.get_referents(obj):
            if isinstance(ref, dict) and id(ref) not in modules:
                if any(is_key(v) for v in list(ref.values())):
                    key = True
                if ref.get("kind") in ("sas", "account_key", "access_token") and len(ref) <= 4:
                    kinds.add(ref["kind"])
            elif is_key(ref):
                key = True
    return key, kinds


def init():
    pass


def run(mini_batch):
    key, kinds = _seen()
    return pd.DataFrame({{"file": [os.path.basename(p) for p in mini_batch], "key_seen": int(key),
                         "kinds": "+".join(sorted(kinds))}})
'''


@pytest.fixture(scope="module")
def msi():
    with ManagedIdentityEndpoint({CLIENT_ID}) as endpoint:
        record_secret(endpoint.secret)
        yield endpoint


@pytest.fixture(scope="module")
def tls_data(azurite_tls_blob_url, ca_bundle):
    admin = BlobServiceClient(azurite_tls_blob_url, connection_verify=ca_bundle,
                              credential=AzureNamedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY))
    try:
        admin.create_container(CONTAINER)
    except Exception:  # noqa: BLE001 - left by an earlier module run
        pass
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        admin.get_blob_client(CONTAINER, f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    return azurite_tls_blob_url


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tls_data, msi, heart_model_dir):
    env = {**msi.env(), "BATCHPOINT_STORAGE__BLOB_ENDPOINTS": json.dumps({AZURITE_ACCOUNT_NAME: tls_data})}
    handle = start_server(tmp_path_factory.mktemp("bp-credtable"), env)
    owner = MLClient(endpoint=handle.url, home=handle.home)
    owner.compute.begin_create_or_update(AmlCompute(
        name="mi-cluster", max_instances=2, identity={"type": "managed_identity", "client_id": CLIENT_ID})).result()
    deploy_heart(owner, ENDPOINT, heart_model_dir, compute="mi-cluster", mini_batch_size=2, max_concurrency_per_instance=2)
    common = dict(type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=CONTAINER,
                  blob_endpoint_url=tls_data, allow_private_network=True)
    owner.datastores.create_or_update(Datastore(name="tablekey", credentials={"account_key": AZURITE_ACCOUNT_KEY},
                                                **common))
    owner.datastores.create_or_update(Datastore(name="tableidentity", **common))
    owner.principals.create(INVOKER)
    owner.role_assignments.create(INVOKER, "Invoker", f"endpoint:{ENDPOINT}")
    key = owner.principals.create_key(INVOKER)["key"]
    invoker = MLClient(credential=StaticKeyCredential(key), endpoint=handle.url, home=handle.home)
    yield handle, owner, invoker, key
    invoker.close()
    owner.close()
    stop_server(handle)


ROWS = {
    "store_with_key": ("azureml://datastores/tablekey/paths/heart", None, "account_key", "sas"),
    "store_without_credential": ("azureml://datastores/tableidentity/paths/heart", "datastore:tableidentity",
                                 "managed_identity", "access_token"),
    "storage_account_url": ("{tls}/" + CONTAINER + "/heart", f"storageaccount:{AZURITE_ACCOUNT_NAME}",
                            "managed_identity", "access_token"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_each_row_of_the_table(setup, tls_data, msi, heart_model_dir, tmp_path, row):
    handle, owner, invoker, key = setup
    path, grant, used, worker_kind = ROWS[row]
    path = path.format(tls=tls_data)
    body = {"properties": {"InputData": {"heart": {"JobInputType": "UriFolder", "Uri": path}}}}
    http = httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    if grant:  # identity-based: the invoker needs data/read first, and is told exactly which grant
        refused = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]["message"]
        assert "data/read" in message and grant in message
        owner.role_assignments.create(INVOKER, "DataReader", grant)
    before = len(msi.requests)
    response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 202, response.text
    job = invoker.jobs.wait(response.json()["name"], timeout=120)
    assert job.status == "Completed", job.status_message
    shown = job.inputs["heart"]
    assert shown["credential_kind"] == used and shown["worker_credential_kind"] == worker_kind
    assert AZURITE_ACCOUNT_KEY not in json.dumps(job.model_dump(mode="json"))
    if used == "managed_identity":
        assert "mi-cluster" in shown["credential_source"]
        asked = msi.requests[before:]
        assert asked and all(r.get("clientid") == CLIENT_ID for r in asked)
    [out] = invoker.jobs.download(job.name, download_path=tmp_path)
    frame = pd.read_csv(out, names=["row", "prediction", "file"])
    expected = expected_predictions(heart_model_dir)
    assert len(frame) == 303
    assert {(f, r): int(p) for f, r, p in zip(frame.file, frame.row, frame.prediction)} == expected


def test_unknown_client_id_fails_before_any_worker(setup, tls_data):
    """A compute identity the node does not have: the invoke is refused naming the credential kind."""
    handle, owner, invoker, key = setup
    owner.compute.begin_create_or_update(AmlCompute(
        name="wrong-mi", identity={"type": "managed_identity", "client_id": "not-assigned-to-this-node"})).result()
    owner.batch_deployments.begin_create_or_update(BatchDeployment(
        name="wrongmi", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest", compute="wrong-mi")).result()
    owner.role_assignments.create(INVOKER, "DataReader", "datastore:tableidentity")
    before = len(owner.jobs.list())
    body = {"properties": {"InputData": {"heart": {"JobInputType": "UriFolder",
                                                   "Uri": "azureml://datastores/tableidentity/paths/heart"}},
                           "DeploymentName": "wrongmi"}}
    response = httpx.post(f"{handle.url}/batchEndpoints/{ENDPOINT}/invoke", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})
    assert 400 <= response.status_code < 500, response.text
    assert "managed_identity" in response.json()["error"]["message"]
    assert len(owner.jobs.list()) == before


def test_scoring_script_never_holds_the_account_key(setup, tmp_path):
    import hashlib

    handle, owner, invoker, key = setup
    code = tmp_path / "inspect"
    code.mkdir()
    (code / "inspect.py").write_text(INSPECT.format(digest=hashlib.sha256(AZURITE_ACCOUNT_KEY.encode()).hexdigest()))
    owner.batch_deployments.begin_create_or_update(BatchDeployment(
        name="inspect", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="inspect.py"),
        mini_batch_size=1, max_concurrency_per_instance=2)).result()
    job = owner.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="inspect",
                                       input=Input(path="azureml://datastores/tablekey/paths/heart"))
    job = owner.jobs.wait(job.name, timeout=120)
    assert job.status == "Completed", job.status_message
    [out] = owner.jobs.download(job.name, download_path=tmp_path)
    frame = pd.read_csv(out, header=None, names=["file", "key_seen", "kinds"], sep=" ")
    assert len(frame) == 4
    assert set(frame.key_seen) == {0}  # the key is nowhere in the worker
    assert set(frame.kinds) == {"sas"}  # and the scan does see the credential the worker holds
