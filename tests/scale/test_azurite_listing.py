"""The same shape on Azurite: a job over 600 one-row blobs with a server whose lister may hold
only 100 files ahead of the workers. The listing goes page by page (``storage/azure_blob.py``) into
that bounded queue, so it cannot end before the workers took 500 files: the first mini-batch is
scored before the listing ends, the lister's lead stays within its queue, and the metadata store
grows by about a row per mini-batch, not per blob. (The 100,000-blob figure is in
``bench/bench_scale.py``: uploading that many blobs to Azurite takes minutes.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import start_server, stop_server, wait_job
from batchpoint import Datastore, Input, MLClient
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME
from scale.support import JobSampler, deploy_noop, table_rows

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(300)]

BLOBS, MINI_BATCH, QUEUE_FILES, WORKERS = 600, 5, 100, 4
CONTAINER, ENDPOINT = f"scalelisting-{uuid.uuid4().hex[:8]}", "scale-azurite"  # a fresh container per run


def upload(connection_string: str) -> int:
    async def run() -> int:
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(connection_string) as service:
            await service.create_container(CONTAINER)
            container = service.get_container_client(CONTAINER)
            limit = asyncio.Semaphore(64)

            async def put(i: int) -> None:
                async with limit:
                    await container.upload_blob(f"many/d{i // 1000}/f{i:05d}.csv", f"x\n{i}\n".encode(), overwrite=True)

            await asyncio.gather(*(put(i) for i in range(BLOBS)))
            return len([b async for b in container.list_blobs(name_starts_with="many/")])

    return asyncio.run(run())


def test_azurite_listing_is_paged_bounded_and_writes_no_row_per_blob(
        tmp_path: Path, azurite_connection_string: str, azurite_blob_url: str) -> None:
    assert upload(azurite_connection_string) == BLOBS
    home = tmp_path / "home"
    server = start_server(home, {"BATCHPOINT_JOBS__LISTING_QUEUE_FILES": str(QUEUE_FILES)})
    try:
        with MLClient(endpoint=server.url, home=home) as client:
            client.datastores.create_or_update(Datastore(
                name="scaleblob", type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=CONTAINER,
                blob_endpoint_url=azurite_blob_url, allow_private_network=True,
                credentials={"account_key": AZURITE_ACCOUNT_KEY}))
            deploy_noop(client, tmp_path, ENDPOINT, MINI_BATCH, workers=WORKERS)
            rows_before = table_rows(home / "metadata.db")
            job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                type="uri_folder", path="azureml://datastores/scaleblob/paths/many"))
            with JobSampler(server.proc.pid, home / "jobs" / job.name) as sampler:
                final = wait_job(client, job.name, timeout=240)
            assert final.status == "Completed", (final.status_message, final.error, server.log()[-3000:])
            p = final.progress
            assert (p.files_total, p.files_completed, p.files_failed, p.rows) == (BLOBS, BLOBS, 0, BLOBS)
            assert final.first_mini_batch_at < final.listing_completed_at, (final.first_mini_batch_at,
                                                                            final.listing_completed_at)
            assert sampler.samples > 0
            assert sampler.max_lead <= QUEUE_FILES // MINI_BATCH + WORKERS + 2, sampler.max_lead

            rows_after = table_rows(home / "metadata.db")
            grown = {t: rows_after[t] - rows_before.get(t, 0) for t in rows_after}
            assert grown.get("job_failures", 0) == 0, grown
            assert sum(grown.values()) < BLOBS // MINI_BATCH + 50, grown  # about one per mini-batch
    finally:
        stop_server(server)
