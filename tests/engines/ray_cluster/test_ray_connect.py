"""A Ray compute whose address answers but is no Ray head (the issue-23 case of a mistyped address
that `ray.init` waits on for ever): the job fails within BATCHPOINT_RAY__CONNECT_TIMEOUT_S naming
the address, and the server is not wedged — the same compute pointed at the real cluster runs the
next job to Completed without a restart. On a server of its own (one Ray cluster per workspace)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path


import grpc
import pytest

from conftest import HEART_UNLABELED, start_server, stop_server, wait_job
from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model, MLClient
from fixtures.flows import write_script

pytestmark = pytest.mark.timeout(240)

SCORE_PY = """
import os

def init():
    pass

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[MLClient]:
    server = start_server(tmp_path / "home", {"BATCHPOINT_RAY__CONNECT_TIMEOUT_S": "8"})
    ml = MLClient(endpoint=server.url, home=server.home)
    try:
        yield ml
    finally:
        ml.close()
        stop_server(server)


def test_a_wrong_address_fails_the_job_in_seconds_and_wedges_nothing(client: MLClient, ray_address: str,
                                                                   ray_token: str, tmp_path: Path) -> None:
    dummy = grpc.server(futures.ThreadPoolExecutor(1))  # speaks HTTP/2, passes the probe, is no GCS
    port = dummy.add_insecure_port("127.0.0.1:0")
    dummy.start()
    wrong = f"127.0.0.1:{port}"
    try:
        client.compute.begin_create_or_update(AmlCompute(name="ray-c", type="ray", address=wrong,
                                                         auth_token=ray_token, num_cpus_per_worker=0.5)).result()
        code = write_script(tmp_path / "code", SCORE_PY)
        client.models.create_or_update(Model(name="names", type="custom_model", path=str(code)))
        client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="ray-typo")).result()
        client.batch_deployments.begin_create_or_update(BatchDeployment(
            name="ray", endpoint_name="ray-typo", model="azureml:names@latest", compute="azureml:ray-c",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            mini_batch_size=2), set_default=True).result()
        started = time.monotonic()
        job = client.batch_endpoints.invoke(endpoint_name="ray-typo",
                                            input=Input(type="uri_folder", path=str(HEART_UNLABELED))).name
        failed = wait_job(client, job, timeout=90)
        took = time.monotonic() - started
    finally:
        dummy.stop(None)
    assert failed.status == "Failed", (failed.status, failed.status_message)
    said = f"{failed.status_message} {failed.error}"
    assert wrong in said and "cannot connect to the Ray cluster" in said and "ray start --head" in said, said
    assert took < 60, f"the job took {took:.0f} s to fail"

    client.compute.begin_create_or_update(AmlCompute(name="ray-c", type="ray", address=ray_address,
                                                     auth_token=ray_token, num_cpus_per_worker=0.5)).result()
    good = client.batch_endpoints.invoke(endpoint_name="ray-typo",
                                         input=Input(type="uri_folder", path=str(HEART_UNLABELED))).name
    final = wait_job(client, good, timeout=150)
    assert final.status == "Completed", (final.status_message, final.error)
    assert final.progress.files_completed == 4


