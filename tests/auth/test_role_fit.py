"""Roles that fit the spec and the docs.

* The spec's tip — a local folder input is uploaded to the default data store — works for an
  Invoker of one endpoint through the CLI, with no grant on data stores (before: it needed
  ``datastores/read`` first, and the suggested fix, Reader on the workspace, over-granted).
* A Reader sees job metadata but never data bytes: not the output files, not the log contents.
* An invoke cannot raise ``instance_count`` (or the worker count) above the compute's
  ``max_instances``; a deployment cannot ask for more than its compute has.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from batchpoint import AmlCompute, BatchDeployment
from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job
from fixtures.inproc_cli import run_cli

ENDPOINT = "rolefit-ep"
COMPUTE = "rolefit-cluster"


@pytest.fixture(scope="module")
def keys(server, ml_client, heart_model_dir):
    ml_client.compute.begin_create_or_update(AmlCompute(name=COMPUTE, max_instances=2)).result()
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=2, compute=COMPUTE)
    out = {"owner": server.home.joinpath("owner.key").read_text().strip()}
    for who, role, scope in (("invoker", "Invoker", f"endpoint:{ENDPOINT}"), ("reader", "Reader", "workspace")):
        pid = f"user:rolefit-{who}"
        ml_client.principals.create(pid)
        ml_client.role_assignments.create(pid, role, scope)
        out[who] = record_secret(ml_client.principals.create_key(pid)["key"])
    return out


def _cli(server, key: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``batchpoint ARGS`` as ``key``'s holder: the CLI run in this process (fixtures/inproc_cli.py)."""
    env = {**server.env, "BATCHPOINT_SERVER_URL": server.url, "BATCHPOINT_API_KEY": key}
    return subprocess.CompletedProcess([str(Path(sys.executable).parent / "batchpoint"), *args],
                                       *run_cli(env, *args, cwd=cwd))


def _http(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def invoker_job(server, ml_client, keys, tmp_path_factory):
    """The spec's tip as an Invoker: ``--input <local folder>`` through the CLI."""
    folder = tmp_path_factory.mktemp("local-input") / "heart"
    folder.mkdir()
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        (folder / csv.name).write_bytes(csv.read_bytes())
    (folder / "extra.csv").write_text((HEART_UNLABELED / "heart-unlabeled-0.csv").read_text())  # unique content
    with _http(server, keys["invoker"]) as http:
        assert http.get("/defaultDatastore").status_code == 403  # it still has no data store grant
    proc = _cli(server, keys["invoker"], "batch-endpoint", "invoke", "-n", ENDPOINT, "--input", "./heart",
                "--query", "name", "-o", "tsv", cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr
    job = wait_job(ml_client, proc.stdout.strip())
    assert job.status == "Completed", job.error
    assert job.inputs["input_data"]["path"].startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    return job


def test_invoker_invokes_with_a_local_folder_and_downloads_its_own_output(server, keys, invoker_job, tmp_path):
    assert invoker_job.created_by == "user:rolefit-invoker"
    assert invoker_job.progress.rows == 303 + 100
    proc = _cli(server, keys["invoker"], "job", "download", "-n", invoker_job.name, "--download-path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "named-outputs" / "score" / "predictions.csv").read_text().count("\n") == 403


def test_reader_sees_metadata_but_no_data_bytes(server, ml_client, keys, invoker_job):
    job = invoker_job.name
    log = invoker_job.log_files[0]
    with _http(server, keys["reader"]) as reader:
        assert reader.get(f"/jobs/{job}").status_code == 200
        assert log in [item["name"] for item in reader.get(f"/jobs/{job}/logs").json()["logs"]]
        for url in (f"/jobs/{job}/outputs/score", f"/jobs/{job}/outputs/score/files/predictions.csv",
                    f"/jobs/{job}/logs/{log}"):
            response = reader.get(url)
            assert response.status_code == 403, (url, response.text)
            assert "jobs/outputs/read" in response.json()["error"]["message"]
    with _http(server, keys["invoker"]) as invoker:  # its own job: outputs and logs
        assert invoker.get(f"/jobs/{job}/outputs/score/files/predictions.csv").status_code == 200
        assert invoker.get(f"/jobs/{job}/logs/{log}").status_code == 200
    proc = _cli(server, keys["reader"], "job", "download", "-n", job, "--download-path", "/tmp/never")
    assert proc.returncode != 0 and "jobs/outputs/read" in proc.stderr and "Traceback" not in proc.stderr


def test_invoker_cannot_read_another_users_outputs(server, ml_client, keys):
    owner_job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=_folder_input(ml_client))
    wait_job(ml_client, owner_job.name)
    with _http(server, keys["invoker"]) as invoker:
        response = invoker.get(f"/jobs/{owner_job.name}/outputs/score/files/predictions.csv")
    assert response.status_code == 403, response.text


def _folder_input(ml_client):
    from batchpoint import Data, Input

    data = ml_client.data.create_or_update(Data(name="rolefit-data", path=str(HEART_UNLABELED), type="uri_folder"))
    return Input(type="uri_folder", path=data.id)


@pytest.mark.parametrize(("settings", "expected", "says"), [
    ({"instance_count": 2}, 202, None),
    ({"instance_count": 3}, 400, "max_instances of compute 'rolefit-cluster' (2)"),
    ({"instance_count": 64}, 400, "max_instances of compute 'rolefit-cluster' (2)"),
    ({"instance_count": 2, "max_concurrency_per_instance": 8}, 400, "2 × 8 = 16 workers"),
    ({"instance_count": 0}, 400, "instance_count must be at least 1"),
])
def test_invoke_cannot_exceed_the_compute(server, ml_client, keys, settings, expected, says):
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": _folder_input(ml_client).path}},
                           "Settings": settings}}
    with _http(server, keys["invoker"]) as invoker:
        before = len(invoker.get("/jobs", params={"limit": 1000}).json())
        response = invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
        after = len(invoker.get("/jobs", params={"limit": 1000}).json())
    assert response.status_code == expected, response.text
    if says:
        assert says in response.json()["error"]["message"], response.text
        assert after == before
    else:
        assert wait_job(ml_client, response.json()["name"]).status == "Completed"


def test_deployment_cannot_ask_for_more_than_its_compute(ml_client):
    from batchpoint.exceptions import ValidationError

    with pytest.raises(ValidationError, match="max_instances 2"):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=f"big-{uuid.uuid4().hex[:4]}", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest",
            compute=COMPUTE, instance_count=3))


def test_without_a_compute_the_deployment_is_the_limit(server, ml_client, keys, heart_model_dir):
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="nocompute", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest", instance_count=1))
    body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": _folder_input(ml_client).path}},
                           "DeploymentName": "nocompute", "Settings": {"instance_count": 2}}}
    with _http(server, keys["invoker"]) as invoker:
        response = invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400 and "the deployment's own instance_count" in response.text, response.text
