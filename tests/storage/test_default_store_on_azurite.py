"""Acceptance (issue 3): the workspace's default data store on Azure Blob (Azurite), through a real server.

An ``azure_blob`` data store (account key, Azurite's ``blob_endpoint_url``) registered with the CLI from
a YAML file that says ``is_default: true`` replaces ``workspaceblobstore`` as the default. From then on
the workspace names Azurite's account as its storage account, local inputs are uploaded into the
Azurite container under ``LocalUpload/<id>/...`` (once: the same folder is not sent again), job
outputs are written there, and ``job download`` (SDK and CLI) reads them back.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from batchpoint import AssetTypes, Input
from conftest import HEART_ROWS, HEART_UNLABELED, deploy_heart, expected_predictions, start_server, stop_server
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
ENDPOINT = "heart-default-blob"
CONTAINER = "workspacestore"
STORE = "azuriteblobstore"


@pytest.fixture(scope="module")
def blob_service(azurite_connection_string):
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        service.create_container(CONTAINER)  # private: only the account key reads it
    except Exception:  # noqa: BLE001 - already there from an earlier run against the same Azurite
        pass
    container = service.get_container_client(CONTAINER)
    for blob in container.list_blobs():  # a clean container: every blob the test sees was written by it
        container.delete_blob(blob.name)
    return service


@pytest.fixture(scope="module")
def handle(tmp_path_factory, blob_service):
    handle = start_server(tmp_path_factory.mktemp("bp-default-blob"))
    yield handle
    stop_server(handle)


def run_cli(handle, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real ``batchpoint`` console script against this module's server."""
    exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
    env = {**handle.env, "BATCHPOINT_SERVER_URL": handle.url}
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"batchpoint {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


@pytest.fixture(scope="module")
def client(handle, azurite_blob_url, tmp_path_factory):
    """The server with the Azurite store made default through ``batchpoint datastore create -f``."""
    from batchpoint import MLClient

    spec = tmp_path_factory.mktemp("specs") / "datastore.yml"
    spec.write_text(yaml.safe_dump({
        "$schema": "https://azuremlschemas.azureedge.net/latest/azureBlob.schema.json",
        "name": STORE, "type": "azure_blob", "account_name": AZURITE_ACCOUNT_NAME, "container_name": CONTAINER,
        "blob_endpoint_url": azurite_blob_url, "allow_private_network": True, "is_default": True,
        "credentials": {"account_key": AZURITE_ACCOUNT_KEY},
    }))
    c = MLClient(endpoint=handle.url, home=handle.home)
    assert c.datastores.get_default().name == "workspaceblobstore"
    try:
        created = yaml.safe_load(run_cli(handle, "datastore", "create", "--file", str(spec), "-o", "yaml").stdout)
    finally:
        spec.unlink()  # it holds the account key; stop_server scans every file the server wrote
    assert created["is_default"] is True and created["credential_kind"] == "account_key"
    assert AZURITE_ACCOUNT_KEY not in yaml.safe_dump(created)
    yield c
    c.close()


@pytest.fixture(scope="module")
def deployed(client, heart_model_dir):
    """A model registered from a local folder (so uploaded to the Azurite default store too) and deployed."""
    deploy_heart(client, ENDPOINT, heart_model_dir, mini_batch_size=2, max_concurrency_per_instance=2)
    return client


def _blobs(service, prefix: str) -> dict[str, tuple[str, object]]:
    """name → (etag, last_modified) of every blob under ``prefix`` in the workspace container."""
    container = service.get_container_client(CONTAINER)
    return {b.name: (b.etag, b.last_modified) for b in container.list_blobs(name_starts_with=prefix)}


def _upload_puts(client) -> list[str]:
    """Paths of the file uploads (PUT /uploads/<id>/files/...) in the server's audit log."""
    return [e["resource"] for e in client.audit.list(limit=1000)
            if e["action"] == "PUT" and e["resource"].startswith("/uploads/")]


def _check_scores(frame: pd.DataFrame, model_dir: Path) -> None:
    assert len(frame) == HEART_ROWS
    got = {(f, int(r)): int(p) for f, r, p in zip(frame.file, frame.row, frame.prediction)}
    assert got == expected_predictions(model_dir)


def test_default_store_replaced_and_workspace_names_azurite(client, handle):
    stores = {d.name: d for d in client.datastores.list()}
    assert stores[STORE].is_default and not stores["workspaceblobstore"].is_default
    assert [d.name for d in stores.values() if d.is_default] == [STORE]
    default = client.datastores.get_default()
    assert (default.name, default.type, default.account_name, default.container_name) == \
        (STORE, "azure_blob", AZURITE_ACCOUNT_NAME, CONTAINER)
    shown = run_cli(handle, "workspace", "show", "--query", "storage_account", "-o", "tsv").stdout.strip()
    assert shown.startswith("/subscriptions/") and \
        shown.endswith(f"/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT_NAME}"), shown
    workspace = client.workspaces.get()
    assert workspace.storage_account == shown and workspace.default_datastore == STORE
    assert run_cli(handle, "datastore", "show", "-n", "workspaceblobstore", "--query", "is_default",
                   "-o", "tsv").stdout.strip() == "false"


def test_local_folder_uploaded_once_to_azurite_and_output_written_there(
        deployed, handle, blob_service, heart_model_dir, tmp_path):
    client = deployed
    folder = tmp_path / "heart-local"
    shutil.copytree(HEART_UNLABELED, folder)
    names = sorted(p.name for p in folder.glob("*.csv"))

    before = _upload_puts(client)
    first = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=AssetTypes.URI_FOLDER,
                                                                                path=str(folder)))
    uri = first.inputs["input_data"]["path"]
    prefix = uri.split("/paths/", 1)[1]
    assert uri.startswith(f"azureml://datastores/{STORE}/paths/LocalUpload/") and prefix.endswith("/heart-local")
    uploaded = _blobs(blob_service, prefix + "/")
    assert sorted(uploaded) == [f"{prefix}/{n}" for n in names]
    for name in names:  # the bytes in Azurite are the local file's
        data = blob_service.get_blob_client(CONTAINER, f"{prefix}/{name}").download_blob().readall()
        assert data == (folder / name).read_bytes()
    after = _upload_puts(client)  # newest first
    assert sorted(p.rsplit("/", 1)[-1] for p in after[: len(after) - len(before)]) == names

    first = client.jobs.wait(first.name, timeout=120)
    assert first.status == "Completed", first.status_message
    assert first.progress.rows == HEART_ROWS

    # the same folder again: the content hash matches, nothing is sent, the blobs are untouched
    puts_before_second = len(_upload_puts(client))
    second = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=AssetTypes.URI_FOLDER,
                                                                                 path=str(folder)))
    assert second.inputs["input_data"]["path"] == uri
    assert len(_upload_puts(client)) == puts_before_second
    assert _blobs(blob_service, prefix + "/") == uploaded  # same etags and last-modified times
    second = client.jobs.wait(second.name, timeout=120)
    assert second.status == "Completed", second.status_message

    # the predictions file is a blob in the Azurite container, under the default output path
    for job in (first, second):
        out = job.outputs["score"]
        assert out.path == f"azureml://datastores/{STORE}/paths/azureml/{job.name}/score"
        blob = f"azureml/{job.name}/score/{out.file_name}"
        assert blob in _blobs(blob_service, f"azureml/{job.name}/")
        text = blob_service.get_blob_client(CONTAINER, blob).download_blob().readall().decode()
        _check_scores(pd.read_csv(io.StringIO(text), names=["row", "prediction", "file"]), heart_model_dir)

    # SDK download
    [path] = client.jobs.download(first.name, download_path=tmp_path / "sdk")
    assert path == tmp_path / "sdk" / "named-outputs" / "score" / first.outputs["score"].file_name
    _check_scores(pd.read_csv(path, names=["row", "prediction", "file"]), heart_model_dir)

    # CLI download
    printed = run_cli(handle, "job", "download", "-n", second.name, "--download-path", str(tmp_path / "cli")).stdout
    [cli_path] = [Path(line) for line in printed.splitlines() if line.strip()]
    assert cli_path == tmp_path / "cli" / "named-outputs" / "score" / second.outputs["score"].file_name
    _check_scores(pd.read_csv(cli_path, names=["row", "prediction", "file"]), heart_model_dir)
