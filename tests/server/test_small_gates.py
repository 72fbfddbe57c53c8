"""Issue 18 §5, the smaller gates, through the real app in-process (``fixtures/inproc.py``):

* an absolute or escaping ``code_configuration.scoring_script`` is refused at deployment create and
  update (before: ``/etc/passwd`` was accepted and executed, bypassing the copied code folder);
* ``output_file_name`` is checked at invoke by Azure's rules, the error saying what is valid
  (before: NUL, CR/LF, 400 characters and ``.tmp-abc`` were accepted and failed or vanished later);
* a Reader's ``GET /jobs/<job>`` (and an Invoker's on its own failed job) shows no absolute server
  path in ``status_message`` / ``error`` (Owners see them);
* a 60 MiB ``Uri`` is not echoed whole in the 400 body;
* ``{"expires_in_days": true}`` is a 400, not a 1-day key (and the other counts and switches).
"""

from __future__ import annotations

import json

import pytest

from batchpoint.jobs import lifecycle
from fixtures.inproc import invoke_body, workspace

ENDPOINT = "gates-ep"
DATA = "azureml://datastores/workspaceblobstore/paths/gates-data"
STORE = "azureml://datastores/workspaceblobstore/paths"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with workspace(tmp_path_factory.mktemp("gates")) as inproc:
        inproc.deploy(ENDPOINT)
        inproc.put_file("gates-data/a.csv", b"x\n1\n")
        inproc.reader = inproc.as_role("gates-reader", "Reader")
        inproc.invoker = inproc.as_role("gates-invoker", "Invoker", f"endpoint:{ENDPOINT}")
        yield inproc


def _deployment(script: str) -> dict:
    return {"model": f"azureml:{ENDPOINT}-model:1", "env_manager": "local",
            "code_configuration": {"code": f"{STORE}/setup/{ENDPOINT}/code", "scoring_script": script}}


@pytest.mark.parametrize("script", ["/etc/passwd", "../x.py", "sub/../../score.py", "..\\x.py", "C:\\x\\score.py",
                                    "~/score.py", "/"])
def test_scoring_script_outside_the_code_folder_is_refused(ws, script):
    before = ws.owner.get(f"/batchEndpoints/{ENDPOINT}/deployments/echo").json()
    created = ws.owner.put(f"/batchEndpoints/{ENDPOINT}/deployments/sneaky", json=_deployment(script))
    assert created.status_code == 400, created.text
    assert "must be a relative path inside the code folder" in created.json()["error"]["message"]
    assert ws.owner.get(f"/batchEndpoints/{ENDPOINT}/deployments/sneaky").status_code == 404
    updated = ws.owner.patch(f"/batchEndpoints/{ENDPOINT}/deployments/echo",
                             json={"code_configuration": {"scoring_script": script}})
    assert updated.status_code == 400, updated.text
    assert "must be a relative path inside the code folder" in updated.json()["error"]["message"]
    after = ws.owner.get(f"/batchEndpoints/{ENDPOINT}/deployments/echo").json()
    assert after["code_configuration"] == before["code_configuration"]


def test_scoring_script_in_a_subfolder_is_fine(ws):
    ws.put_file(f"setup/{ENDPOINT}/code/src/score.py", b"def init():\n    pass\n\ndef run(b):\n    return b\n")
    assert ws.owner.put(f"/batchEndpoints/{ENDPOINT}/deployments/nested",
                        json=_deployment("src/score.py")).status_code == 200


@pytest.mark.parametrize("name", ["a\u0000b.csv", "a\r\nb.csv", "a\nb.csv", "x" * 400, "é" * 200, ".tmp-abc",
                                  "a/b.csv", "a\\b.csv", "..", "predictions.", "_PARTIAL.json"])
def test_output_file_name_is_checked_at_invoke(ws, name):
    before = len(ws.owner.get("/jobs").json())
    response = ws.invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(DATA, OutputFileName=name))
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "output_file_name" in message and "1 to 255 bytes" in message and "'.tmp-'" in message, message
    assert len(message) < 2000
    assert len(ws.owner.get("/jobs").json()) == before


@pytest.mark.parametrize("name", ["predictions.csv", "scores 2024.csv", "résultats.parquet", "x" * 250])
def test_valid_output_file_names_are_accepted(ws, name):
    response = ws.invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(DATA, OutputFileName=name))
    assert response.status_code == 202, response.text
    assert response.json()["outputs"]["score"]["file_name"] == name


def test_output_file_name_is_checked_on_the_deployment_too(ws):
    body = {**_deployment("score.py"), "settings": {"output_file_name": ".tmp-x"}}
    response = ws.owner.put(f"/batchEndpoints/{ENDPOINT}/deployments/tmpname", json=body)
    assert response.status_code == 400 and "output_file_name" in response.text


def _failed_job(ws, client) -> str:
    response = client.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(DATA))
    assert response.status_code == 202, response.text
    name = response.json()["name"]
    home = ws.home
    log = home / "jobs" / name / "logs" / "worker-1.log"
    store = ws.owner.get("/datastores/workspaceblobstore").json()["path"]
    # the message forms the engines write when a worker dies (engines/policy.py, local_pool.py)
    message = (f"worker 1 exited with code 3 while scoring mini-batch 0 of local(path={store}) "
               f"(init() or run() crashed): see the worker log {log}")
    ws.ctx.dispatcher.close()  # no runner moves the job on under the test
    assert lifecycle.fail(ws.ctx.store, name, message, {"message": message, "code": "PlatformError",
                                                        "details": {"log": str(log), "input": f"{store}/gates-data"}})
    return name


def test_server_paths_are_for_owners_only(ws):
    name = _failed_job(ws, ws.invoker)
    home = str(ws.home)
    for who in (ws.reader, ws.invoker):  # a Reader; the Invoker on its own failed job
        shown = who.get(f"/jobs/{name}")
        assert shown.status_code == 200, shown.text
        assert home not in shown.text and "local(path=" not in shown.text, shown.text
        job = shown.json()
        assert "see the worker log <server home>/jobs/" in job["status_message"], job["status_message"]
        assert "local data store" in job["status_message"]
        assert job["error"]["details"]["input"] == "<data store 'workspaceblobstore'>/gates-data"
        listed = who.get(f"/batchEndpoints/{ENDPOINT}/jobs")
        assert listed.status_code == 200 and home not in listed.text
        events = who.get(f"/jobs/{name}/events")
        assert events.status_code == 200 and "see the worker log <server home>/jobs/" in events.text, events.text
        assert home not in events.text and "local(path=" not in events.text
        with who.stream("GET", f"/jobs/{name}/events/stream") as streamed:
            text = "".join(streamed.iter_text())
        assert "<server home>/jobs/" in text and home not in text, text
    owner = ws.owner.get(f"/jobs/{name}").json()
    assert home in owner["status_message"] and "local(path=" in owner["status_message"]
    assert home in ws.owner.get(f"/jobs/{name}/events").text


@pytest.mark.parametrize("spelling", ["", "azureml://datastores/", "https://example.com/", "bogus://",
                                      "azureml://datastores/workspaceblobstore/paths/"])
def test_a_huge_uri_is_not_echoed_whole(ws, spelling):
    uri = spelling + "a" * (60 * 2**20)
    response = ws.invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", content=json.dumps(invoke_body(uri)),
                               headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 404), response.text[:500]
    assert len(response.content) < 10_000, len(response.content)
    assert "a" * 1000 not in response.text
    assert "chars)" in response.text or "characters)" in response.text, response.text  # says how long it was


def test_expires_in_days_true_is_refused(ws):
    ws.owner.post("/principals", json={"id": "user:gates-keys"})
    for bad in (True, "30", 1.5):
        response = ws.owner.post("/principals/user:gates-keys/keys", json={"expires_in_days": bad})
        assert response.status_code == 400, response.text
        assert "expires_in_days" in response.json()["error"]["message"]
    assert ws.owner.get("/principals/user:gates-keys/keys").json() == []
    assert ws.owner.post("/principals/user:gates-keys/keys", json={"expires_in_days": 2}).status_code == 201


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/computes/gates-cpu", {"max_instances": True}, "max_instances"),
    ("/datastores/gatesprivate", {"type": "azure_blob", "account_name": "acct1", "container_name": "data",
                                  "blob_endpoint_url": "http://127.0.0.1:1/acct1", "allow_private_network": "yes"},
     "allow_private_network"),
])
def test_security_relevant_counts_and_switches_are_strict(ws, path, body, field):
    response = ws.owner.put(path, json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]


@pytest.mark.parametrize("settings", [{"instance_count": True}, {"max_concurrency_per_instance": True},
                                      {"mini_batch_size": True}, {"error_threshold": False}])
def test_invoke_counts_are_strict(ws, settings):
    response = ws.invoker.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(DATA, Settings=settings))
    assert response.status_code == 400, response.text
    assert "whole number" in response.json()["error"]["message"]
