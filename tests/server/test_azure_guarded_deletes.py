"""The Azure-shaped delete of an endpoint or a deployment keeps the native guard (issue 20): a 409 in
ARM's error shape naming the queued job, nothing deleted; once the job has ended, the delete goes
through. In process (the real app over SQLite), the dispatcher closed so the job stays Queued."""

from __future__ import annotations

import pytest

from fixtures.inproc import invoke_body, workspace

WS = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1"


@pytest.fixture()
def ws(tmp_path):
    with workspace(tmp_path) as inproc:
        inproc.deploy("held-ep")
        inproc.put_file("held-data/a.csv", b"x\n1\n")
        inproc.ctx.dispatcher.close()  # the job stays Queued
        yield inproc


def test_an_arm_delete_with_a_queued_job_is_a_409_naming_it(ws):
    response = ws.owner.post("/batchEndpoints/held-ep/invoke",
                             json=invoke_body("azureml://datastores/workspaceblobstore/paths/held-data"))
    assert response.status_code in (200, 201, 202), response.text
    job = response.json()["name"]
    for path, what in ((WS + "/batchEndpoints/held-ep/deployments/echo", "deployment 'echo' of batch endpoint 'held-ep'"),
                       (WS + "/batchEndpoints/held-ep", "batch endpoint 'held-ep'")):
        refused = ws.owner.delete(path, params={"api-version": "2023-10-01"})
        assert refused.status_code == 409, refused.text
        message = refused.json()["error"]["message"]
        assert f"{what} has 1 job(s) that have not ended: {job}" in message, message
    assert ws.owner.get(WS + "/batchEndpoints/held-ep/deployments/echo").status_code == 200  # nothing deleted
    assert ws.owner.post(f"/jobs/{job}/cancel").status_code in (200, 202)
    assert ws.owner.delete(WS + "/batchEndpoints/held-ep/deployments/echo").status_code == 200
    assert ws.owner.delete(WS + "/batchEndpoints/held-ep").status_code == 200
    assert ws.owner.get(WS + "/batchEndpoints/held-ep").status_code == 404
