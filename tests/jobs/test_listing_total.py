"""While the listing goes on, a job shows how far it got: ``files_total`` grows (with
``listing_complete`` false, shown as ``N+``) before the listing ends — issue 13's "total growing
while the listing goes on". The lister's queue is held small (20 files) and each mini-batch takes
a little time, so the listing lasts a few seconds behind the workers."""

from __future__ import annotations

import time
from pathlib import Path

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, MLClient, Model
from batchpoint.sdk.job_events import of_total
from conftest import start_server, stop_server, wait_job
from fixtures.flows import write_script

FILES = 120
SCORE_PY = """
import os
import time


def init():
    pass


def run(mini_batch):
    time.sleep(0.05)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_total_grows_while_the_listing_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data" / "many"
    data.mkdir(parents=True)
    for i in range(FILES):
        (data / f"f{i:04d}.csv").write_text("a\n1\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("none\n")
    handle = start_server(tmp_path / "home", {"BATCHPOINT_JOBS__LISTING_QUEUE_FILES": "20"})
    try:
        with MLClient(endpoint=handle.url, home=handle.home) as client:
            client.datastores.create_or_update(Datastore(name="many", type="local", path=str(tmp_path / "data")))
            client.models.create_or_update(Model(name="noop", type="custom_model", path=str(tmp_path / "model")))
            client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="listing-total")).result()
            client.batch_deployments.begin_create_or_update(BatchDeployment(
                name="noop", endpoint_name="listing-total", model="azureml:noop@latest",
                code_configuration=CodeConfiguration(code=str(write_script(tmp_path / "code", SCORE_PY)),
                                                     scoring_script="score.py"),
                instance_count=1, max_concurrency_per_instance=1, mini_batch_size=1), set_default=True).result()
            job = client.batch_endpoints.invoke(endpoint_name="listing-total",
                                                input=Input(type="uri_folder", path="azureml://datastores/many/paths/many"))
            seen: list[int] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                shown = client.jobs.get(job.name)
                if shown.status in ("Completed", "Failed", "Canceled"):
                    break
                p = shown.progress
                if p.files_total is not None and not p.listing_complete:
                    seen.append(p.files_total)
                time.sleep(0.2)
            final = wait_job(client, job.name, timeout=120)
            assert final.status == "Completed", (final.status_message, final.error)
            assert final.progress.files_total == FILES and final.progress.listing_complete
            assert seen, "no total was shown while the listing went on"
            assert seen == sorted(seen) and 0 < seen[0] < FILES, seen  # it only grows, below the end total
            messages = [e.message or "" for e in client.jobs.events(job.name)]
            so_far = [m for m in messages if m.startswith("listing:") and "so far" in m]
            done = [i for i, m in enumerate(messages) if m.startswith("listing complete")]
            assert so_far and done and messages.index(so_far[0]) < done[0], messages
    finally:
        stop_server(handle)
    assert of_total(40, complete=False) == "40+" and of_total(40, complete=True) == "40"
