"""Acceptance (Storage 1, 4): the heart job over data in Azurite, through a real server.

Data stores by account key and by SAS, a data asset over the blob path, a public container by
URL (uri_folder in every spelling: ``https://<acct>.blob...``, Azurite's own URL, ``wasbs://`` and
``abfss://``; uri_file), and bad credentials refused within seconds with no job left.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from batchpoint import AssetTypes, Data, Datastore, Input
from batchpoint.exceptions import BatchpointError
from conftest import HEART_UNLABELED, deploy_heart, expected_predictions, record_secret, start_server, stop_server
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
ENDPOINT = "heart-remote"


@pytest.fixture(scope="module")
def azurite(azurite_connection_string, azurite_blob_url):
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    for name, public in (("heartdata", None), ("publicdata", "container")):
        try:
            service.create_container(name, public_access=public)
        except Exception:  # noqa: BLE001 - already there from an earlier module
            pass
        for csv in sorted(HEART_UNLABELED.glob("*.csv")):
            service.get_blob_client(name, f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    return service, azurite_blob_url


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory, azurite):
    _, blob_url = azurite
    env = {"BATCHPOINT_STORAGE__BLOB_ENDPOINTS": json.dumps({AZURITE_ACCOUNT_NAME: blob_url})}
    handle = start_server(tmp_path_factory.mktemp("bp-remote"), env)
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def client(remote_server, heart_model_dir):
    from batchpoint import MLClient

    c = MLClient(endpoint=remote_server.url, home=remote_server.home)
    deploy_heart(c, ENDPOINT, heart_model_dir, mini_batch_size=2, max_concurrency_per_instance=2)
    yield c
    c.close()


def _blob_store(name, blob_url, credentials):
    return Datastore(name=name, type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name="heartdata",
                     blob_endpoint_url=blob_url, allow_private_network=True, credentials=credentials)


def _check_predictions(client, job, model_dir, tmp_path, files=None):
    """The downloaded output holds every row of every expected input file exactly once, with the
    model's own predictions — counted from the file itself, not from the server's counter."""
    job = client.jobs.wait(job.name, timeout=120)
    assert job.status == "Completed", job.status_message
    [path] = client.jobs.download(job.name, download_path=tmp_path)
    frame = pd.read_csv(path, names=["row", "prediction", "file"])
    expected = expected_predictions(model_dir)
    if files is not None:
        expected = {k: v for k, v in expected.items() if k[0] in files}
    got = [(f, r) for f, r in zip(frame.file, frame.row)]
    assert len(got) == len(set(got)), "a row appears twice in the output"
    assert {(f, r): int(p) for f, r, p in zip(frame.file, frame.row, frame.prediction)} == expected
    assert job.progress.rows == len(frame) == len(expected)
    return job


def test_blob_datastore_by_account_key(client, azurite, heart_model_dir, tmp_path):
    _, blob_url = azurite
    client.datastores.create_or_update(_blob_store("heartblob", blob_url, {"account_key": AZURITE_ACCOUNT_KEY}))
    shown = client.datastores.get("heartblob")
    assert shown.credential_kind == "account_key" and AZURITE_ACCOUNT_KEY not in shown.model_dump_json()
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
        type=AssetTypes.URI_FOLDER, path="azureml://datastores/heartblob/paths/heart"))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    assert job.inputs["input_data"]["credential_kind"] == "account_key"


def test_blob_datastore_by_sas_and_asset(client, azurite, heart_model_dir, tmp_path):
    _, blob_url = azurite
    sas = generate_container_sas(AZURITE_ACCOUNT_NAME, "heartdata", account_key=AZURITE_ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    record_secret(sas.split("sig=")[1].split("&")[0])
    client.datastores.create_or_update(_blob_store("heartsas", blob_url, {"sas_token": sas}))
    client.data.create_or_update(Data(name="heart-blob", path="azureml://datastores/heartsas/paths/heart",
                                      type=AssetTypes.URI_FOLDER))
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path="azureml:heart-blob@latest"))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    assert job.inputs["input_data"]["credential_kind"] == "sas"


@pytest.mark.parametrize("spelling", [
    "https://{acct}.blob.core.windows.net/publicdata/heart",
    "{blob}/publicdata/heart",
    "wasbs://publicdata@{acct}.blob.core.windows.net/heart",
    "abfss://publicdata@{acct}.dfs.core.windows.net/heart",
])
def test_public_container_url_folder(client, azurite, heart_model_dir, tmp_path, spelling):
    """Every spelling of the public container's folder reaches Azurite (``BATCHPOINT_STORAGE__BLOB_ENDPOINTS``
    maps the account) and scores the same 303 rows; ``abfss://`` is read as ADLS Gen2 through the
    blob API (Azurite has no DFS endpoint, and Batchpoint needs none)."""
    _, blob_url = azurite
    url = spelling.format(acct=AZURITE_ACCOUNT_NAME, blob=blob_url)
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=AssetTypes.URI_FOLDER, path=url))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    seen = job.inputs["input_data"]
    assert seen["credential_kind"] == "anonymous"
    kind = "azure_data_lake_gen2" if url.startswith("abfss://") else "azure_blob"
    assert seen["location"].startswith(f"{kind}(") and f"blob_endpoint_url={blob_url}" in seen["location"], seen


def test_public_container_url_file(client, azurite, heart_model_dir, tmp_path):
    url = f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/publicdata/heart/heart-unlabeled-0.csv"
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=AssetTypes.URI_FILE, path=url))
    _check_predictions(client, job, heart_model_dir, tmp_path, files={"heart-unlabeled-0.csv"})


@pytest.mark.parametrize("case", ["wrong_key", "expired_sas", "missing_container", "file_on_folder"])
def test_refused_within_seconds_and_no_job(client, azurite, case):
    _, blob_url = azurite
    before = len(client.jobs.list())
    started = time.monotonic()
    with pytest.raises(BatchpointError) as info:
        if case == "wrong_key":
            client.datastores.create_or_update(_blob_store("badkey", blob_url, {"account_key": "QUFBQQ==" * 11}))
        elif case == "expired_sas":
            sas = generate_container_sas(AZURITE_ACCOUNT_NAME, "heartdata", account_key=AZURITE_ACCOUNT_KEY,
                                         permission=ContainerSasPermissions(read=True, list=True),
                                         expiry=datetime.now(UTC) - timedelta(hours=1))
            client.datastores.create_or_update(_blob_store("expired", blob_url, {"sas_token": sas}))
        elif case == "missing_container":
            client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                path=f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/nosuchcontainer/heart"))
        else:
            client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                type=AssetTypes.URI_FILE, path=f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/publicdata/heart"))
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert AZURITE_ACCOUNT_KEY not in message and "sig=" not in message
    assert len(client.jobs.list()) == before
