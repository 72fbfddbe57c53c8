"""Inputs as a new user gives them, and storage that fails, through a real server and Azurite.

Reproduces: plain ``https://<host>/<path>`` inputs always failed with an internal message; an
unreachable account took ~30 s and then blamed a missing identity; a missing path in a public
container said "no identity"; data assets on a credential-less data store could not be registered
(the server read them with its own identity); an empty path scored the whole default data store.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from batchpoint import AssetTypes, Data, Datastore, Input
from batchpoint.exceptions import BatchpointError, InputError, PermissionDeniedError
from conftest import HEART_UNLABELED, deploy_heart, record_secret, start_server, stop_server, wait_job
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
ENDPOINT = "input-errors"


@pytest.fixture(scope="module")
def blackhole() -> Iterator[str]:
    """A TCP port on loopback that accepts connections and never answers (a host that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/{AZURITE_ACCOUNT_NAME}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(scope="module")
def closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT_NAME}"


@pytest.fixture(scope="module")
def tls_public_blob(azurite_tls_blob_url, ca_bundle) -> str:
    """A public container on the HTTPS Azurite with one heart file; returns the file's plain URL."""
    admin = BlobServiceClient(azurite_tls_blob_url, connection_verify=ca_bundle,
                              credential={"account_name": AZURITE_ACCOUNT_NAME, "account_key": AZURITE_ACCOUNT_KEY})
    try:
        admin.create_container("plainhttps", public_access="container")
    except Exception:  # noqa: BLE001 - there from an earlier module
        pass
    name = "heart/heart-unlabeled-0.csv"
    admin.get_blob_client("plainhttps", name).upload_blob((HEART_UNLABELED / "heart-unlabeled-0.csv").read_bytes(),
                                                          overwrite=True)
    return f"{azurite_tls_blob_url}/plainhttps/{name}"


@pytest.fixture(scope="module")
def handle(tmp_path_factory, azurite_connection_string, azurite_blob_url):
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    for name, public in (("errpublic", "container"), ("errprivate", None)):
        try:
            service.create_container(name, public_access=public)
        except Exception:  # noqa: BLE001 - already there
            pass
        for csv in sorted(HEART_UNLABELED.glob("*.csv")):
            service.get_blob_client(name, f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    env = {"BATCHPOINT_STORAGE__BLOB_ENDPOINTS": json.dumps({AZURITE_ACCOUNT_NAME: azurite_blob_url}),
           "BATCHPOINT_STORAGE__ALLOW_PRIVATE_HOSTS": json.dumps(["127.0.0.1"])}
    server = start_server(tmp_path_factory.mktemp("bp-input-errors"), env)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(handle, heart_model_dir):
    from batchpoint import MLClient

    c = MLClient(endpoint=handle.url, home=handle.home)
    deploy_heart(c, ENDPOINT, heart_model_dir, mini_batch_size=2)
    yield c
    c.close()


def _refused(client, path, input_type=None, within=5.0) -> BatchpointError:
    before = len(client.jobs.list())
    started = time.monotonic()
    with pytest.raises(BatchpointError) as info:
        client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=input_type, path=path))
    took = time.monotonic() - started
    assert took < within, f"took {took:.1f}s: {info.value}"
    assert len(client.jobs.list()) == before, "a refused invoke left a job"
    return info.value


def test_plain_https_file_is_read_anonymously(client, tls_public_blob, heart_model_dir, tmp_path):
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT,
                                        input=Input(type=AssetTypes.URI_FILE, path=tls_public_blob))
    done = wait_job(client, job.name)
    assert done.status == "Completed", (done.status_message, done.error)
    assert done.progress.rows == 100
    seen = done.inputs["input_data"]
    assert seen["credential_kind"] == "anonymous" and seen["credential_source"] == "anonymous (plain HTTPS)", seen


def test_plain_https_folder_is_refused_saying_why(client, tls_public_blob):
    folder = tls_public_blob.rsplit("/", 1)[0]
    error = _refused(client, folder, AssetTypes.URI_FOLDER)
    assert isinstance(error, InputError)
    assert "no folder listing over plain HTTP" in str(error) and "uri_file" in str(error)


@pytest.mark.parametrize("where", ["blackhole", "closed_port"])
def test_unreachable_storage_is_named_within_seconds(client, request, where):
    endpoint = request.getfixturevalue(where)
    name = f"dead{where.replace('_', '')}"
    client.datastores.create_or_update(Datastore(  # no credentials: read with the job's identity
        name=name, type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name="heart",
        blob_endpoint_url=endpoint, allow_private_network=True))
    error = _refused(client, f"azureml://datastores/{name}/paths/heart")
    message = str(error)
    assert "could not reach" in message and "127.0.0.1" in message, message
    assert "identity" not in message, message


@pytest.mark.parametrize("where", ["blackhole", "closed_port"])
def test_unreachable_s3_endpoint_is_named_within_seconds(client, request, where):
    """The same for an S3 data store (botocore's own retries and timeouts took ~20 s before): one
    with keys is checked when it is registered, so the unreachable endpoint is named there."""
    endpoint = request.getfixturevalue(where).rsplit("/", 1)[0]
    started = time.monotonic()
    with pytest.raises(BatchpointError) as info:
        client.datastores.create_or_update(Datastore(
            name=f"deads3{where.replace('_', '')}", type="s3", bucket="heart", endpoint_url=endpoint,
            allow_private_network=True,
            credentials={"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "not-a-real-secret"}))
    took, message = time.monotonic() - started, str(info.value)
    assert took < 5.0, f"took {took:.1f}s: {message}"
    assert "could not reach" in message and "127.0.0.1" in message, message
    assert "identity" not in message and "not-a-real-secret" not in message, message


def test_missing_path_in_a_public_container_is_named_missing(client):
    url = f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/errpublic/heart/no-such-folder"
    message = str(_refused(client, url))
    assert "does not exist" in message and "identity" not in message, message


def test_private_container_still_asks_for_an_identity(client):
    url = f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/errprivate/heart"
    error = _refused(client, url)
    assert isinstance(error, PermissionDeniedError) and "no identity" in str(error), error


def test_assets_on_identity_storage_are_registered_without_reading(client, handle, blackhole):
    """Azure records such an asset and checks reading when a job uses it, with the job's identity."""
    client.datastores.create_or_update(Datastore(
        name="noidentity", type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name="errprivate",
        blob_endpoint_url=blackhole, allow_private_network=True))
    started = time.monotonic()
    on_store = client.data.create_or_update(Data(name="on-identity-store", type="uri_folder",
                                                 path="azureml://datastores/noidentity/paths/heart"))
    on_url = client.data.create_or_update(Data(
        name="on-storage-url", type="uri_folder",
        path=f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/errprivate/heart"))
    assert time.monotonic() - started < 3, "registration read the data"
    assert on_store.version == "1" and on_url.version == "1"
    client.principals.create("user:inputerr-invoker")
    client.role_assignments.create("user:inputerr-invoker", "Invoker", f"endpoint:{ENDPOINT}")
    key = record_secret(client.principals.create_key("user:inputerr-invoker")["key"])
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": f"azureml:{on_url.name}@latest"}}}}
    response = httpx.post(f"{handle.url}/batchEndpoints/{ENDPOINT}/invoke", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403 and "data/read" in response.json()["error"]["message"], response.text


def test_the_root_of_the_default_store_is_refused(client, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.csv").write_text((HEART_UNLABELED / "heart-unlabeled-0.csv").read_text() + f"\n# {uuid.uuid4()}\n")
    client.data.create_or_update(Data(name="fills-upload-area", path=str(folder), type="uri_folder"))  # LocalUpload/
    error = _refused(client, "azureml://datastores/workspaceblobstore/paths/")
    assert isinstance(error, InputError) and "root of data store 'workspaceblobstore'" in str(error), error
    assert "LocalUpload/" in str(error)


def test_adls_gen1_without_an_identity_names_the_gen1_rule(client):
    """``adl://`` with no identity: Gen1 has no anonymous access, so the answer says that (at once, no
    probe), and gives Gen1's fix — not Blob's "Storage Blob Data Reader" nor "not anonymous"."""
    message = str(_refused(client, "adl://nosuchstore.azuredatalakestore.net/heart", within=2.0))
    assert "Data Lake Storage Gen1 account 'nosuchstore'" in message, message
    assert "cannot be read anonymously" in message and "ACLs" in message, message
    assert "Storage Blob Data Reader" not in message and "container" not in message, message
