"""The output store goes away while a job writes its output (issue 19 §5): a private Azurite,
started by this test on free loopback ports (``test_storage_outage.PrivateAzurite``), holds the
output; every file is scored, then it is stopped while the job is ``Finalizing``.

* Down until one whole write of the output has failed (the Azure SDK's own retries spent, ~15 s):
  the output write is tried again, whole, for ``jobs.output_retry_s`` (120 s by default, as long as a mini-batch's input reads ride
  out); the job Completes with a clean run's output once the store is back. Before: Failed, every
  scored row thrown away.
* Down for longer than ``jobs.output_retry_s`` (2 s on this test's own server): the job fails naming
  where its scored parts are kept (a folder that exists) and how to finish it; once the store is
  back, ``job rerun --failed-only`` — and a plain ``job rerun`` — assemble the kept parts, scoring
  nothing again, into the same output location the failed job had (no "overlaps the output of job").
  Before: 409 "nothing to rerun", and the location refused.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpoint import Datastore, Input, MLClient
from batchpoint.jobs.assembly import finished_parts
from batchpoint.jobs.folder import JobFolder
from conftest import HEART_UNLABELED, start_server, stop_server, wait_job
from fixtures.faults import assert_clean_run_output, download_predictions, make_endpoint, pids, traces_of
from storage.test_storage_outage import AZURITE, PrivateAzurite, _free_ports
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME
from fixtures.flows import wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.azurite]

LAST = "heart-unlabeled-3.csv"  # held in run() until the store is down: the output is written with it down


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[PrivateAzurite]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE}: run scripts/test.sh once", pytrace=False)
    (tmp_path / "azurite").mkdir()
    emulator = PrivateAzurite(tmp_path / "azurite", _free_ports(3))
    emulator.start()
    yield emulator
    emulator.stop()


def _output_store(client: Any, azurite: PrivateAzurite) -> str:
    from azure.storage.blob import BlobServiceClient

    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={azurite.blob_url};")
    with BlobServiceClient.from_connection_string(conn) as service:
        service.create_container("results")
    store = f"results{uuid.uuid4().hex[:6]}"
    client.datastores.create_or_update(Datastore(
        name=store, type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name="results",
        blob_endpoint_url=azurite.blob_url, allow_private_network=True, credentials={"account_key": AZURITE_ACCOUNT_KEY}))
    return store


def _finalize_with_store_down(client: Any, azurite: PrivateAzurite, endpoint: str, store: str,
                              traces: Path) -> tuple[str, float]:
    """Invoke; when 3 of the 4 files are scored and the last is held in run(), stop the store, let
    the last file go, and wait for Finalizing. (job name, when the store went down)"""
    (traces / "signals").mkdir(parents=True)
    name = client.batch_endpoints.invoke(
        endpoint_name=endpoint, input=Input(type="uri_folder", path=str(HEART_UNLABELED)),
        output_path=f"azureml://datastores/{store}/paths/scores",
        environment_variables={"SIGNAL_DIR": str(traces / "signals"), "SIDE_EFFECTS": str(traces / "side-effects.txt"),
                               "HANG_ON": LAST}).name
    wait_until(lambda: pids(traces, "hang") and client.jobs.get(name).progress.mini_batches_completed == 3, 120,
               "3 files scored, the last one held")
    azurite.stop()
    down_at = time.monotonic()
    (traces / "signals" / "released").touch()
    wait_until(lambda: client.jobs.get(name).status == "Finalizing", 60, "the job Finalizing")
    return name, down_at


def test_an_output_store_down_for_longer_than_one_whole_write_while_finalizing_is_ridden_out(
        azurite: PrivateAzurite, server: Any, ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    store = _output_store(ml_client, azurite)
    make_endpoint(ml_client, "faults-out-outage", heart_model_dir, tmp_path / "code", workers=2)
    traces = tmp_path / "traces"
    name, down_at = _finalize_with_store_down(ml_client, azurite, "faults-out-outage", store, traces)
    # down until one whole write of the output, with the SDK's own retries (~15 s), has failed
    failed_write = f"job {name}: writing its output failed"
    wait_until(lambda: failed_write in server.log(), 90, "the first write of the output to fail")
    assert time.monotonic() - down_at > 5, "the write failed before the SDK's own retries were spent"
    assert ml_client.jobs.get(name).status == "Finalizing"
    azurite.start()
    job = wait_job(ml_client, name, timeout=150)
    assert job.status == "Completed", (job.status_message, job.error)
    assert_clean_run_output(download_predictions(ml_client, name, tmp_path / "out"), heart_model_dir, HEART_UNLABELED)


def test_a_job_that_failed_writing_its_output_is_finished_by_rerun_without_scoring_again(
        azurite: PrivateAzurite, heart_model_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, {"BATCHPOINT_JOBS__OUTPUT_RETRY_S": "2"})
    try:
        with MLClient(endpoint=server.url, home=home) as client:
            store = _output_store(client, azurite)
            make_endpoint(client, "faults-out-rerun", heart_model_dir, tmp_path / "code", workers=2)
            traces = tmp_path / "traces"
            name, _ = _finalize_with_store_down(client, azurite, "faults-out-rerun", store, traces)
            failed = wait_job(client, name, timeout=120)
            assert failed.status == "Failed" and failed.progress.mini_batches_completed == 4, failed.status_message
            message = failed.status_message or ""
            parts = home / "jobs" / name / "parts"
            assert f"the scored parts are kept in {parts}." in message, message
            kept = finished_parts(JobFolder.local(home / "jobs", name))  # the 4 mini-batches' rows, in parts/
            assert len(kept) == 4 and all(str(p).startswith(f"{parts}/") for p in kept), kept
            assert f"paths/azureml/{name}/parts" not in message, message  # no location that does not exist
            assert f"batchpoint job rerun --name {name}" in message, message

            azurite.start()
            scored_before = Counter(traces_of(traces, "scored"))
            assert sorted(scored_before) == sorted(p.name for p in HEART_UNLABELED.glob("*.csv"))
            for failed_only in (True, False):
                rerun = client.jobs.rerun(name, failed_only=failed_only)
                done = wait_job(client, rerun.name, timeout=120)
                assert done.status == "Completed", (failed_only, done.status_message, done.error)
                assert done.outputs["score"].path == failed.outputs["score"].path  # where the failed job's would be
                assert done.outputs["score"].path.endswith(f"datastores/{store}/paths/scores")
                assert done.progress.files_total == 0  # nothing scored again
                assert_clean_run_output(download_predictions(client, rerun.name, tmp_path / f"out-{failed_only}"),
                                        heart_model_dir, HEART_UNLABELED)
            assert Counter(traces_of(traces, "scored")) == scored_before  # no file was scored again
    finally:
        stop_server(server)
