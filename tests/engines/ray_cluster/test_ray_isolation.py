"""Issue 18 §1 on Ray: a Ray actor runs the scoring code in a fenced child process (a bubblewrap
sandbox on the node, ``worker/ray_actor.py``), not in its own process.

The hostile script of ``tests/engines/test_worker_isolation.py`` (the server's home and its keys,
other jobs, ``/proc/self/fd``, ``/proc/*/environ`` — here also the Ray node's own processes, which
carry the test components' ``BATCHPOINT_TEST_*`` variables — and ``BATCHPOINT_*`` in its own
environment) runs on the test command's Ray cluster through a fenced server: the job scores every
file and the script finds nothing.
"""

from __future__ import annotations

from pathlib import Path
import pytest

from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from conftest import HEART_UNLABELED, start_server, stop_server, wait_job
from fixtures.flows import write_script
from engines.test_worker_isolation import CANARY, HOSTILE_PY, _findings

pytestmark = pytest.mark.timeout(300)


def test_a_hostile_script_on_ray_finds_nothing(tmp_path: Path, heart_pickle_dir: Path, ray_address: str,
                                               ray_token: str) -> None:
    home = tmp_path / "home"
    server = start_server(home, {"BATCHPOINT_WORKERS__ISOLATION": "bwrap", "BATCHPOINT_PROBE_CANARY": CANARY})
    client = MLClient(endpoint=server.url, home=server.home)
    try:
        client.compute.begin_create_or_update(AmlCompute(
            name="ray-fenced", type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
            max_instances=2)).result()
        code = write_script(tmp_path / "code", HOSTILE_PY)
        client.models.create_or_update(Model(name="ray-probe", type="custom_model", path=str(heart_pickle_dir)))
        client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="ray-probe")).result()
        client.batch_deployments.begin_create_or_update(BatchDeployment(
            name="ray", endpoint_name="ray-probe", model="azureml:ray-probe@latest", compute="azureml:ray-fenced",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            instance_count=1, max_concurrency_per_instance=2, mini_batch_size=2, error_threshold=0,
            retry_settings={"max_retries": 0, "timeout": 120}), set_default=True).result()
        job = client.batch_endpoints.invoke(
            endpoint_name="ray-probe", input=Input(type="uri_folder", path=str(HEART_UNLABELED)),
            environment_variables={"PROBE_HOME": str(home), "OTHER_JOB": "none", "SERVER_PID": str(server.proc.pid)})
        done = wait_job(client, job.name, timeout=240)
        assert done.status == "Completed", done
        found = _findings(client, job.name, tmp_path / "out")
    finally:
        client.close()
        stop_server(server)
    assert sorted(found) == sorted(p.name for p in HEART_UNLABELED.glob("*.csv"))
    assert set(found.values()) == {"nothing"}, found
