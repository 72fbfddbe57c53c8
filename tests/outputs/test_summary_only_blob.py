"""``summary_only`` with the output on Azure Blob storage (Azurite): what the scoring script wrote
to ``AZUREML_BI_OUTPUT_PATH`` lands in the job's output folder in the blob container, the job
writes no predictions file, and ``jobs.download(output_name="score")`` brings the script's files."""

from __future__ import annotations

import io
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from outputs.test_custom_model_outputs import PARQUET_DRIVER
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, Model
from conftest import HEART_UNLABELED, record_secret, start_server, stop_server
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
CONTAINER = "bioutput"


@pytest.fixture(scope="module")
def blob(azurite_connection_string: str, azurite_blob_url: str) -> BlobServiceClient:
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        service.create_container(CONTAINER)
    except Exception:  # noqa: BLE001 - already there from an earlier run
        pass
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        service.get_blob_client(CONTAINER, f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    return service


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, blob: BlobServiceClient, azurite_blob_url: str,
           pickled_heart: Path) -> Any:
    from batchpoint import MLClient

    env = {"BATCHPOINT_STORAGE__BLOB_ENDPOINTS": json.dumps({AZURITE_ACCOUNT_NAME: azurite_blob_url})}
    handle = start_server(tmp_path_factory.mktemp("bp-bi-blob"), env)
    code = tmp_path_factory.mktemp("bi-code")
    (code / "batch_driver_parquet.py").write_text(textwrap.dedent(PARQUET_DRIVER).lstrip())
    c = MLClient(endpoint=handle.url, home=handle.home)
    c.datastores.create_or_update(Datastore(
        name="bloboutputs", type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=CONTAINER,
        blob_endpoint_url=azurite_blob_url, allow_private_network=True,
        credentials={"account_key": record_secret(AZURITE_ACCOUNT_KEY)}))
    c.models.create_or_update(Model(name="heart-pkl", type="custom_model", path=str(pickled_heart)))
    c.batch_endpoints.begin_create_or_update(BatchEndpoint(name="heart-bi-blob")).result()
    c.batch_deployments.begin_create_or_update(BatchDeployment(
        name="parquet", endpoint_name="heart-bi-blob", model="azureml:heart-pkl@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="batch_driver_parquet.py"),
        mini_batch_size=2, max_concurrency_per_instance=2, output_action="summary_only"), set_default=True).result()
    yield c
    c.close()
    stop_server(handle)


def test_script_files_land_in_the_blob_output(client: Any, blob: BlobServiceClient,
                                             heart_expected: dict[str, list[int]], tmp_path: Path) -> None:
    folder = f"scored/{uuid.uuid4().hex[:8]}"
    job = client.batch_endpoints.invoke(
        endpoint_name="heart-bi-blob", input=Input(path="azureml://datastores/bloboutputs/paths/heart"),
        output_path=f"azureml://datastores/bloboutputs/paths/{folder}")
    job = client.jobs.wait(job.name, timeout=180)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.rows == 4  # run() returned the 4 paths it scored
    container = blob.get_container_client(CONTAINER)
    names = sorted(b.name for b in container.list_blobs(name_starts_with=f"{folder}/"))
    assert names == [f"{folder}/{stem}.parquet" for stem in heart_expected]  # and no predictions file
    for stem, expected in heart_expected.items():
        data = container.get_blob_client(f"{folder}/{stem}.parquet").download_blob().readall()
        assert pd.read_parquet(io.BytesIO(data))["prediction"].tolist() == expected
    saved = client.jobs.download(job.name, download_path=tmp_path, output_name="score")
    assert sorted(p.name for p in saved) == [f"{stem}.parquet" for stem in heart_expected]
