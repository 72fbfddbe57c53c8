"""A job over 100,000 small files on the local data store, against a real server process: the
first mini-batch is scored before the listing ends, the lister never runs more than its queue
(10,000 files) ahead of the workers (plus the finished mini-batches whose done entries are not written
yet, at most jobs/progress.py BACKLOG_MAX), the server's memory grows by less than 100 MB over the job
(VmRSS from /proc), and the metadata store does not grow by a row per file (no failures: no
failure rows; one progress event per mini-batch of 100 files, not per file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import start_server, stop_server, wait_job
from batchpoint import Datastore, Input, MLClient
from batchpoint.engines.scheduler import AHEAD_MAX
from batchpoint.jobs.listing import QUEUE_FILES
from batchpoint.jobs.progress import BACKLOG_MAX
from fixtures.scale import JobSampler, deploy_noop, rss_kb, scratch_folder, table_rows, write_small_files

pytestmark = pytest.mark.timeout(300)

FILES, MINI_BATCH = 100_000, 100
ENDPOINT = "scale-local"


def test_a_job_over_100000_files_stays_flat(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with scratch_folder(tmp_path) as data:
        write_small_files(data / "many", FILES)
        server = start_server(home)
        try:
            with MLClient(endpoint=server.url, home=home) as client:
                client.datastores.create_or_update(Datastore(name="scaledata", type="local", path=str(data)))
                deploy_noop(client, tmp_path, ENDPOINT, MINI_BATCH)
                warm = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                    type="uri_file", path="azureml://datastores/scaledata/paths/many/d0000/f0000000.csv"))
                assert wait_job(client, warm.name).status == "Completed"
                rows_before = table_rows(home / "metadata.db")
                rss_before = rss_kb(server.proc.pid)

                job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                    type="uri_folder", path="azureml://datastores/scaledata/paths/many"))
                with JobSampler(server.proc.pid, home / "jobs" / job.name) as sampler:
                    final = wait_job(client, job.name, timeout=240)
                assert final.status == "Completed", (final.status_message, final.error, server.log()[-3000:])
                p = final.progress
                assert (p.files_total, p.files_completed, p.files_failed, p.rows) == (FILES, FILES, 0, FILES)
                assert (p.mini_batches_total, p.mini_batches_completed) == (FILES // MINI_BATCH, FILES // MINI_BATCH)

                # scoring started long before the listing ended, and the listing kept only a bounded lead
                assert final.first_mini_batch_at < final.listing_completed_at, (final.first_mini_batch_at,
                                                                                final.listing_completed_at)
                assert sampler.samples > 0
                slots = QUEUE_FILES // MINI_BATCH
                # the lead seen on disk (manifest lines - done lines) is the lister's queue, the lister's
                # hand, the engine's (a worker's each to send ahead, and one per worker left over), the
                # workers' (2, and up to AHEAD_MAX each sent ahead: these mini-batches are short),
                # and the finished mini-batches whose done lines are not written yet: written every quarter
                # second, later when the disk is slow, but never more than BACKLOG_MAX (the engine waits
                # for the disk then). Unbounded, it was the whole listing (640,000 files at this size).
                workers = 2
                assert sampler.max_lead <= slots + 1 + 2 * workers + (1 + AHEAD_MAX) * workers + BACKLOG_MAX, (
                    sampler.max_lead, slots)

                grown_mb = (sampler.peak_rss_kb - rss_before) / 1024
                assert grown_mb < 100, f"the server grew by {grown_mb:.0f} MB over the job"

                rows_after = table_rows(home / "metadata.db")
                grown = {t: rows_after[t] - rows_before.get(t, 0) for t in rows_after}
                assert grown.get("job_failures", 0) == 0, grown
                assert sum(grown.values()) < FILES // MINI_BATCH + 100, grown  # about one per mini-batch
                shown = client.jobs.get(job.name)  # job show answers with the counters, no per-file lists
                assert shown.progress.files_completed == FILES
        finally:
            stop_server(server)
