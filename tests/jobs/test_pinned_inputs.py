"""(b) Inputs are pinned at invoke: a data asset that gets a new version between the invoke and
the job's start does not change what the job scores.

The job is held Queued while every job slot of the server (the dispatcher runs 4 jobs at once) is
taken by a job whose scoring waits for a file; ``azureml:<asset>@latest`` is invoked (version 1),
version 2 is registered pointing at other files, then the slots are freed. The job must score
version 1's files and show version 1 as what it read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import start_server, stop_server, wait_job
from batchpoint import Data, Input, MLClient
from fixtures.flows import wait_until
from jobs.test_resume_manifest import DATASTORE, ENDPOINT, deploy, scored_ids, write_files

pytestmark = pytest.mark.timeout(240)

JOB_SLOTS = 4  # jobs.dispatcher.Dispatcher(max_parallel_jobs=4)


def test_job_scores_the_version_its_invoke_resolved(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "shared"
    release = tmp_path / "release.flag"
    version_1 = write_files(data / "v1", [f"one-{i}.csv" for i in range(3)], first_id=100)
    version_2 = write_files(data / "v2", [f"two-{i}.csv" for i in range(4)], first_id=900)
    handle = start_server(home)
    try:
        with MLClient(endpoint=handle.url, home=home) as client:
            deploy(client, tmp_path, data, name="hold", mini_batch_size=10,
                   environment_variables={"HOLD_UNTIL": str(release)})
            deploy(client, tmp_path, data, name="score")
            asset = client.data.create_or_update(Data(name="pinned-data", type="uri_folder",
                                                      path=f"azureml://datastores/{DATASTORE}/paths/v1"))
            assert asset.version == "1"
            held = Input(type="uri_folder", path=f"azureml://datastores/{DATASTORE}/paths/v1")
            holders = [client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="hold", input=held).name
                       for _ in range(JOB_SLOTS)]
            wait_until(lambda: all(client.jobs.get(n).status == "Running" for n in holders), 60, "holding jobs running")

            job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="score",
                                                input=Input(type="uri_folder", path="azureml:pinned-data@latest"))
            newer = client.data.create_or_update(Data(name="pinned-data", type="uri_folder",
                                                      path=f"azureml://datastores/{DATASTORE}/paths/v2"))
            assert newer.version == "2"
            assert client.jobs.get(job.name).status == "Queued", \
                f"the job left Queued before version 2 existed: are there more than {JOB_SLOTS} job slots?"
            release.touch()

            final = wait_job(client, job.name, timeout=120)
            assert final.status == "Completed", (final.status_message, final.error, handle.log()[-3000:])
            ids = scored_ids(client, job.name, tmp_path / "out")
            assert sorted(ids) == sorted(i for file_ids in version_1.values() for i in file_ids), \
                "the job did not score the version its invoke resolved"
            assert not set(ids) & {i for file_ids in version_2.values() for i in file_ids}
            shown = final.inputs["input_data"]
            assert shown["path"] == "azureml:pinned-data@latest" and shown["asset"] == "pinned-data:1", shown
            pinned = shown["pinned"]
            assert pinned["asset"] == {"name": "pinned-data", "version": "1"}, pinned
            assert (pinned["datastore"], pinned["path"], pinned["type"]) == (DATASTORE, "v1", "uri_folder"), pinned
            assert pinned["location"] == f"local(path={data})", pinned
            assert pinned["credential"] == {"kind": "none", "source": "datastore"}, pinned
            for name in holders:
                assert wait_job(client, name, timeout=60).status == "Completed"
    finally:
        release.touch()
        stop_server(handle)
