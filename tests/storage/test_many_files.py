"""Acceptance (issue 3): 2,000 small files in Azurite are all scored, and scoring starts before the
listing ends.

The files are one-row CSVs with the heart columns. The job's own timestamps show the order:
``first_mini_batch_at`` (the first mini-batch scored) comes before ``listing_completed_at`` (the
last file listed and planned into a mini-batch). The listing runs on a background thread into a
queue bounded in files (``jobs/listing.py``; this test's server holds at most 1,000 files ahead of
the workers, ``BATCHPOINT_JOBS__LISTING_QUEUE_FILES``: 200 mini-batches of 5), so with 400
mini-batches it can only end once the workers have taken 200 of them, which they do one finished
mini-batch at a time: the order does not depend on timing. The raw listing of 2,000 blobs (one
page) takes 0.6 to 0.8 s on Azurite, less than workers need to start and load the model (about
2 s), so when every mini-batch fits the queue the listing ends first; docs/storage.md has the numbers.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from batchpoint import AssetTypes, Datastore, Input
from conftest import HEART_UNLABELED, deploy_heart, start_server, stop_server
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
ENDPOINT = "heart-many"
CONTAINER = "manyfiles"
FILES = 2000
MINI_BATCH = 5  # 400 mini-batches: more than the lister may plan ahead (200), see the module's docstring
QUEUE_FILES = 1000
WORKERS = 4  # reading one-row files is mostly waiting on Azurite: 4 workers on 2 cores finish in about half the time


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """FILES rows with the heart columns (the unlabeled rows, cycled): row i goes to file i.

    The two rows whose ``thal`` is a number ("1", "2") are left out: alone in a file, pandas reads
    that column as integers and the model's one-hot encoder (fitted on strings) refuses them."""
    frame = pd.concat([pd.read_csv(p) for p in sorted(HEART_UNLABELED.glob("*.csv"))], ignore_index=True)
    frame = frame[~frame.thal.astype(str).str.isdigit()].reset_index(drop=True)
    return frame.iloc[[i % len(frame) for i in range(FILES)]].reset_index(drop=True)


def _name(i: int) -> str:
    return f"part-{i:05d}.csv"


@pytest.fixture(scope="module")
def many_blobs(azurite_connection_string, rows):
    """Upload FILES one-row CSVs under many/ (64 uploads at a time on the async client: seconds)."""
    header = ",".join(rows.columns)
    bodies = {f"many/{_name(i)}": f"{header}\n{rows.iloc[i:i + 1].to_csv(header=False, index=False)}".encode()
              for i in range(FILES)}

    async def upload() -> int:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(azurite_connection_string) as service:
            try:
                await service.create_container(CONTAINER)
            except ResourceExistsError:  # from an earlier run against the same Azurite
                pass
            container = service.get_container_client(CONTAINER)
            limit = asyncio.Semaphore(64)

            async def put(name: str, body: bytes) -> None:
                async with limit:
                    await container.upload_blob(name, body, overwrite=True)

            await asyncio.gather(*(put(n, b) for n, b in bodies.items()))
            return len([b async for b in container.list_blobs(name_starts_with="many/")])

    assert asyncio.run(upload()) == FILES


@pytest.fixture(scope="module")
def client(tmp_path_factory, many_blobs, azurite_blob_url, heart_model_dir):
    from batchpoint import MLClient

    handle = start_server(tmp_path_factory.mktemp("bp-many"), {"BATCHPOINT_JOBS__LISTING_QUEUE_FILES": str(QUEUE_FILES)})
    c = MLClient(endpoint=handle.url, home=handle.home)
    c.datastores.create_or_update(Datastore(
        name="manyblob", type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=CONTAINER,
        blob_endpoint_url=azurite_blob_url, allow_private_network=True,
        credentials={"account_key": AZURITE_ACCOUNT_KEY}))
    deploy_heart(c, ENDPOINT, heart_model_dir, mini_batch_size=MINI_BATCH, max_concurrency_per_instance=WORKERS)
    yield c
    c.close()
    stop_server(handle)


def test_two_thousand_files_scored_and_scoring_starts_before_listing_ends(client, rows, heart_model_dir, tmp_path):
    import mlflow.pyfunc

    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
        type=AssetTypes.URI_FOLDER, path="azureml://datastores/manyblob/paths/many"))
    job = client.jobs.wait(job.name, timeout=240, poll=0.5)
    assert job.status == "Completed", job.status_message
    p = job.progress
    assert (p.files_total, p.files_completed, p.files_failed, p.rows) == (FILES, FILES, 0, FILES), job.failures[:3]
    assert (p.mini_batches_total, p.mini_batches_completed, p.listing_complete) == (FILES // MINI_BATCH,) * 2 + (True,)

    assert job.first_mini_batch_at is not None and job.listing_completed_at is not None
    assert job.start_time <= job.first_mini_batch_at < job.listing_completed_at <= job.end_time, (
        job.start_time, job.first_mini_batch_at, job.listing_completed_at, job.end_time)

    [path] = client.jobs.download(job.name, download_path=tmp_path)
    frame = pd.read_csv(path, names=["row", "prediction", "file"])
    assert len(frame) == FILES and set(frame.row) == {0}
    expected = mlflow.pyfunc.load_model(str(heart_model_dir)).predict(rows)
    assert dict(zip(frame.file, frame.prediction.astype(int))) == \
        {_name(i): int(expected[i]) for i in range(FILES)}
