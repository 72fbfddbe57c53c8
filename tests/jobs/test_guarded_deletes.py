"""Deleting an endpoint or a deployment that still has jobs (issue 20, guarded deletes): a 409 naming
the jobs, the endpoint and deployment left as they were — or, with ``force``, the jobs canceled
first and then the delete. Against the session's real server, with jobs held Running by a gate file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from batchpoint.exceptions import ConflictError, NotFoundError
from conftest import wait_job
from jobs.events_support import invoke, make_event_endpoint

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "guarded-deletes"


@pytest.fixture()
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> str:
    make_event_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path / "code",
                        quick={}, held={"environment_variables": {"HOLD_ON": "heart-unlabeled-0.csv"}})
    yield ENDPOINT
    try:
        ml_client.batch_endpoints.begin_delete(ENDPOINT, force=True).result()
    except NotFoundError:
        pass


def _held_job(ml_client: Any, gate: Path) -> str:
    name = invoke(ml_client, ENDPOINT, "held", environment_variables={"HOLD_UNTIL": str(gate)})
    deadline = time.monotonic() + 90
    while ml_client.jobs.get(name).status != "Running":
        assert time.monotonic() < deadline, ml_client.jobs.get(name)
        time.sleep(0.1)
    return name


def test_a_delete_with_running_jobs_is_refused_naming_them(ml_client: Any, cli: Any, endpoint: str,
                                                           tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = _held_job(ml_client, gate)
    with pytest.raises(ConflictError) as refused:
        ml_client.batch_deployments.begin_delete("held", endpoint_name=ENDPOINT).result()
    message = str(refused.value)
    assert f"deployment 'held' of batch endpoint '{ENDPOINT}' has 1 job(s) that have not ended: {job}" in message
    assert "--force" in message
    with pytest.raises(ConflictError, match=f"batch endpoint '{ENDPOINT}' has 1 job"):
        ml_client.batch_endpoints.begin_delete(ENDPOINT).result()
    result = cli("batch-deployment", "delete", "-n", "held", "-e", ENDPOINT, "--yes", check=False)
    assert result.code == 1 and job in result.err and "Traceback" not in result.err, result
    # nothing was deleted, and the job was left alone: it completes once let go
    assert ml_client.batch_deployments.get("held", endpoint_name=ENDPOINT).name == "held"
    assert ml_client.jobs.get(job).status == "Running"
    gate.touch()
    assert wait_job(ml_client, job).status == "Completed"
    # with no job left the same delete goes through
    ml_client.batch_deployments.begin_delete("held", endpoint_name=ENDPOINT).result()
    with pytest.raises(NotFoundError):
        ml_client.batch_deployments.get("held", endpoint_name=ENDPOINT)


def test_force_cancels_the_jobs_then_deletes(ml_client: Any, cli: Any, endpoint: str, tmp_path: Path) -> None:
    first = _held_job(ml_client, tmp_path / "never")
    other = invoke(ml_client, ENDPOINT, "quick")  # a job of another deployment of the endpoint
    ml_client.batch_deployments.begin_delete("held", endpoint_name=ENDPOINT, force=True).result()
    assert wait_job(ml_client, first).status == "Canceled"
    with pytest.raises(NotFoundError):
        ml_client.batch_deployments.get("held", endpoint_name=ENDPOINT)
    assert wait_job(ml_client, other).status == "Completed"  # deleting 'held' left it alone
    second = invoke(ml_client, ENDPOINT, "quick", environment_variables={"HOLD_ON": "heart-unlabeled-0.csv",
                                                                         "HOLD_UNTIL": str(tmp_path / "never")})
    result = cli("batch-endpoint", "delete", "-n", ENDPOINT, "--yes", "--force")
    assert result.code == 0, result
    assert wait_job(ml_client, second).status == "Canceled"
    with pytest.raises(NotFoundError):
        ml_client.batch_endpoints.get(ENDPOINT)


def test_deleting_what_does_not_exist_is_a_404_not_a_409(ml_client: Any) -> None:
    with pytest.raises(NotFoundError):
        ml_client.batch_endpoints.begin_delete("no-such-endpoint").result()
    with pytest.raises(NotFoundError):
        ml_client.batch_deployments.begin_delete("nope", endpoint_name="no-such-endpoint").result()
