"""The 100,000-file shape on Azurite, at a size the suite can afford: a job over 1,000 one-row
blobs, against a real server whose lister may hold only 100 files ahead of its 4 workers, with a
counting relay between Batchpoint and the real Azurite (bytes unchanged; each request's line
recorded).

- The listing goes page by page (``storage/azure_blob.py``) into that bounded queue, so it cannot
  end before the workers took 900 files: the first mini-batch is scored before the listing ends
  and the lister's lead stays within its queue.
- Requests: the listing is List Blobs calls of 5,000 after a first one of 100 (two here), the
  job's other requests to storage are a few probes when it is invoked, and each blob is read once,
  by a worker (one GET): no request per file from the server (a HEAD per blob, pages of 1,000 or a
  listing per mini-batch fail here).
- The server grows by less than the issue's 100 MB, and the metadata store by about a row per
  mini-batch, none per blob.

Why 1,000 and not 100,000: Azurite's cost per request grows with the blobs its account holds
(~4 ms of its CPU per Put Blob in an empty account, ~70 ms with 30,000 there: its store scans the
account's blobs), so 30,000 blobs took 25 minutes to upload here and 100,000 would take hours.
``bench/bench_scale.py`` measured the largest count uploaded, 30,905 blobs, with 100 files per
mini-batch (docs/performance.md, "Scale"): the listing in 8 requests, 19 s against the plain SDK's
38.5 s in the same run, +1.4 MiB; in the job, the first mini-batch after 13 s (100 reads at
Azurite's ~70 ms each), the lister 10,000 files ahead of the workers, the server +7.4 MiB, 32
metadata rows, and 7 List Blobs + 1 HEAD from the server against 1,414 GETs from the workers."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest

from conftest import start_server, stop_server, wait_job
from batchpoint import Datastore, Input, MLClient
from batchpoint.storage.azure_blob import AzureBlobBackend
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME
from fixtures.scale import CountingRelay, JobSampler, deploy_noop, rss_kb, table_rows, upload_small_blobs

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(300)]

BLOBS, MINI_BATCH, QUEUE_FILES, WORKERS = 1000, 10, 100, 4
ENDPOINT = "scale-azurite"


def test_azurite_job_lists_in_pages_of_5000_reads_each_blob_once_and_stays_flat(
        tmp_path: Path, azurite_connection_string: str, azurite_blob_url: str) -> None:
    container = f"scalelisting-{uuid.uuid4().hex[:8]}"  # a fresh container per run
    upload_small_blobs(azurite_connection_string, container, BLOBS)
    home = tmp_path / "home"
    server = start_server(home, {"BATCHPOINT_JOBS__LISTING_QUEUE_FILES": str(QUEUE_FILES)})
    account_path = "/" + azurite_blob_url.rstrip("/").rsplit("/", 1)[-1]
    try:
        with CountingRelay(azurite_blob_url) as relay, MLClient(endpoint=server.url, home=home) as client:
            client.datastores.create_or_update(Datastore(
                name="scaleblob", type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=container,
                blob_endpoint_url=relay.url(account_path), allow_private_network=True,
                credentials={"account_key": AZURITE_ACCOUNT_KEY}))
            deploy_noop(client, tmp_path, ENDPOINT, MINI_BATCH, workers=WORKERS)
            warm = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(  # the server's Azure imports
                type="uri_file", path="azureml://datastores/scaleblob/paths/many/d0000/f0000000.csv"))
            assert wait_job(client, warm.name).status == "Completed"
            rows_before, rss_before = table_rows(home / "metadata.db"), rss_kb(server.proc.pid)
            before = len(relay.snapshot())

            job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                type="uri_folder", path="azureml://datastores/scaleblob/paths/many"))
            with JobSampler(server.proc.pid, home / "jobs" / job.name) as sampler:
                final = wait_job(client, job.name, timeout=240)
            assert final.status == "Completed", (final.status_message, final.error, server.log()[-3000:])
            p = final.progress
            assert (p.files_total, p.files_completed, p.files_failed, p.rows) == (BLOBS, BLOBS, 0, BLOBS)

            # scoring started before the listing ended, and the listing kept only a bounded lead
            assert final.first_mini_batch_at < final.listing_completed_at, (final.first_mini_batch_at,
                                                                            final.listing_completed_at)
            assert sampler.samples > 0
            # lead = listed minus logged as done: the queue's mini-batches, the workers' and the lister's
            # hand, plus those finished but not yet in the done log (written in groups every 0.25 s:
            # jobs/progress.py, later on a loaded machine: 37 seen once beside other benches); a queue bounded in
            # mini-batches (the old max(256, 64 x size)) holds all 100
            slots = QUEUE_FILES // MINI_BATCH
            assert sampler.max_lead <= 4 * slots + WORKERS + 2, (sampler.max_lead, slots)

            # what the job sent to Azurite: the listing (a first page of 100, then pages of 5,000), one GET
            # per blob (by the workers), and a few probes when it was invoked; nothing per file from the server
            job_requests = relay.snapshot()[before:]
            kinds, sizes = CountingRelay.kinds_of(job_requests), CountingRelay.list_page_sizes_of(job_requests)
            first, page = AzureBlobBackend.first_page_size, AzureBlobBackend.page_size
            assert (first, page) == (100, 5000)
            assert sizes.count(page) == math.ceil((BLOBS - first) / page), sizes
            assert sizes.count(first) <= 2, sizes  # the lister's first page, the invoke's is-it-empty check
            assert set(sizes) <= {first, page, 1, 50} and len(sizes) <= 6, sizes  # 1, 50: the invoke's probes
            assert kinds["get"] == BLOBS, kinds  # each blob read once, by a worker
            assert kinds["head"] <= 3, kinds
            assert set(kinds) <= {"list", "get", "head"}, kinds

            grown_mb = (sampler.peak_rss_kb - rss_before) / 1024
            assert grown_mb < 100, f"the server grew by {grown_mb:.0f} MB over the job"
            rows_after = table_rows(home / "metadata.db")
            grown = {t: rows_after[t] - rows_before.get(t, 0) for t in rows_after}
            assert grown.get("job_failures", 0) == 0, grown
            assert sum(grown.values()) < BLOBS // MINI_BATCH + 50, grown  # about one per mini-batch
    finally:
        stop_server(server)
