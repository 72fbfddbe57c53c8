"""Bounds on what a request may ask for: paging parameters and JSON nesting (no 500s).

Reproduces: ``GET /auditLog?limit=-2…`` and ``GET /jobs?skip=9223372036854775808`` answered 500
OverflowError; ``/auditLog?limit=-1`` returned the whole log past the 1,000 cap; arrays nested
1,000 deep sent to invoke answered 500 RecursionError.
"""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("url", [
    "/auditLog?limit=-1", "/auditLog?limit=-2", "/auditLog?limit=0", "/auditLog?limit=1001",
    "/auditLog?limit=99999999999999999999", "/jobs?skip=9223372036854775808", "/jobs?skip=-1",
    "/jobs?limit=0", "/jobs?limit=1001", "/batchEndpoints/x/jobs?skip=18446744073709551616",
])
def test_paging_parameters_are_bounded(server, url):
    with server.rest() as rest:
        response = rest.get(url)
    assert response.status_code == 400, (url, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "validation_error" and ("limit" in error["message"] or "skip" in error["message"])


def test_audit_log_never_returns_more_than_a_page(server, ml_client):
    for i in range(3):
        ml_client.principals.create(f"user:bounds-{i}")
    with server.rest() as rest:
        assert len(rest.get("/auditLog?limit=2").json()) == 2
        assert len(rest.get("/auditLog?limit=1000").json()) <= 1000


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_a_400(server, depth):
    body = '{"properties": {"InputData": ' + "[" * depth + "]" * depth + "}}"
    with server.rest() as rest:
        response = rest.post("/batchEndpoints/nosuch/invoke", content=body,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "nested too deeply" in response.json()["error"]["message"], response.text
        assert rest.get("/health").status_code == 200  # the server is fine afterwards


SURROGATE = "\ud800"


def _raw(body: dict) -> bytes:
    import json

    return json.dumps(body).encode()  # ensure_ascii: the lone surrogate travels as the escape \ud800


@pytest.mark.parametrize(("method", "url", "body"), [
    ("POST", "/batchEndpoints/bounds-ep/invoke",
     {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": "azureml:bounds@latest"}},
                     "Settings": {"environment_variables": {"X": SURROGATE}}}}),
    ("PUT", "/batchEndpoints/bounds-ep2", {"description": SURROGATE}),
    ("PUT", "/computes/bounds-cpu", {"type": "amlcompute", "description": SURROGATE}),
    ("PUT", "/datastores/boundsstore", {"type": "local", "path": "/tmp", "description": SURROGATE}),
    ("POST", "/principals", {"id": "user:bounds-x", "display_name": SURROGATE}),
    ("POST", "/principals", {"id": "user:bounds-y", "display_name": "ok", SURROGATE: 1}),
])
def test_text_that_cannot_be_stored_is_refused_at_the_boundary(server, method, url, body):
    with server.rest() as rest:
        jobs_before = rest.get("/jobs", params={"limit": 1000}).json()
        response = rest.request(method, url, content=_raw(body), headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "lone UTF-16 surrogate" in response.json()["error"]["message"]
        assert rest.get("/jobs", params={"limit": 1000}).json() == jobs_before
        assert rest.get("/principals").status_code == 200


def test_a_stored_bad_row_does_not_break_the_lists(server, ml_client, heart_model_dir):
    """A job stored with such text before it was refused is still listed and shown (escaped)."""
    from batchpoint import Data, Input
    from batchpoint.settings import Settings
    from batchpoint.store.sql import SqlMetadataStore
    from conftest import HEART_UNLABELED, deploy_heart, wait_job

    deploy_heart(ml_client, "bounds-ep", heart_model_dir)
    data = ml_client.data.create_or_update(Data(name="bounds", path=str(HEART_UNLABELED), type="uri_folder"))
    job = wait_job(ml_client, ml_client.batch_endpoints.invoke(endpoint_name="bounds-ep", input=Input(path=data.id)).name)
    store = SqlMetadataStore(Settings(home=server.home).resolved_database_url())
    try:
        store.update_job(job.name, settings={**job.settings, "environment_variables": {"X": SURROGATE}})
    finally:
        store.close()
    with server.rest() as rest:
        for url in ("/jobs", f"/jobs/{job.name}", "/batchEndpoints/bounds-ep/jobs"):
            response = rest.get(url)
            assert response.status_code == 200, (url, response.text)
            assert "\\ud800" in response.text
    assert job.name in {j.name for j in ml_client.jobs.list()}


def test_method_not_allowed_says_which_are(server):
    with server.rest() as rest:
        response = rest.delete("/workspace")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert "allowed: GET" in response.json()["error"]["message"]


SITECUSTOMIZE_500 = """
import os
if os.environ.get("BP_TEST_FAIL_WORKSPACE"):
    import batchpoint.workspace.service as service

    def _broken(self):
        raise RuntimeError("a bug, on purpose")

    service.WorkspaceService.workspace_entity = _broken
"""


def test_a_500_keeps_the_connection_open(tmp_path):
    """After a server bug's 500 the client's kept-alive connection still works (before: reset)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    from conftest import start_server, stop_server

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE_500)
    import os

    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    handle = start_server(tmp_path / "home", {"PYTHONPATH": path, "BP_TEST_FAIL_WORKSPACE": "1"})
    try:
        url = urlsplit(handle.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        headers = handle.auth_headers()
        conn.request("GET", "/workspace", headers=headers)
        first = conn.getresponse()
        body = json.loads(first.read())
        assert first.status == 500 and body["error"]["code"] == "internal_error", body
        assert "RuntimeError" in body["error"]["message"] and "Traceback" not in body["error"]["message"]
        assert (first.getheader("connection") or "").lower() != "close"
        conn.request("GET", "/datastores", headers=headers)  # the same connection
        second = conn.getresponse()
        assert second.status == 200, second.read()
        second.read()
        conn.close()
        assert "a bug, on purpose" in handle.log()  # the traceback is in the server's log
    finally:
        stop_server(handle)


def test_huge_ids_in_the_path_are_a_400(server):
    with server.rest() as rest:
        response = rest.delete("/roleAssignments/11579960116957367332339974144")
    assert response.status_code == 400 and "assignment_id" in response.json()["error"]["message"], response.text


def test_the_openapi_declares_the_error_answers(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    invoke = schema["paths"]["/batchEndpoints/{name}/invoke"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "409"} <= set(invoke) and "422" not in invoke
    assert "error" in invoke["400"]["content"]["application/json"]["schema"]["properties"]
    deleted = schema["paths"]["/roleAssignments/{assignment_id}"]["delete"]["responses"]
    assert {"204", "404", "409"} <= set(deleted)


def test_method_not_allowed_lists_every_method_of_the_path(server):
    """The router's own 405 named only the first route whose path matched (``Allow: PUT`` on a path
    that also answers GET, PATCH and DELETE)."""
    with server.rest() as rest:
        response = rest.request("OPTIONS", "/batchEndpoints/some-endpoint")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, PATCH, PUT"
        assert "allowed: DELETE, GET, PATCH, PUT" in response.json()["error"]["message"]
        response = rest.post("/datastores/workspaceblobstore")
        assert (response.status_code, response.headers["allow"]) == (405, "GET, PUT")


def test_openapi_types_the_request_bodies(server):
    """Request bodies are described by the entities' schemas and the spec's invoke body, not as free
    objects; file and log answers by their real media types (issue 10, item 8)."""
    with server.rest() as rest:
        doc = rest.get("/openapi.json").json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]

    def body(method, path):
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body("put", "/batchEndpoints/{name}") == {"$ref": "#/components/schemas/BatchEndpoint"}
    assert "auth_mode" in schemas["BatchEndpoint"]["properties"]
    assert "name" not in schemas["BatchEndpoint"].get("required", [])  # the URL names it
    deployment = schemas["BatchDeployment"]
    assert {"model", "code_configuration", "settings", "resources"} <= set(deployment["properties"])
    assert deployment["additionalProperties"] is False
    assert "required" not in schemas["BatchDeploymentUpdate"]  # PATCH: any subset, merged
    invoke = body("post", "/batchEndpoints/{name}/invoke")
    assert invoke["properties"]["properties"]["required"] == ["InputData"]
    assert body("post", "/uploads")["required"] == ["name", "type", "files"]
    for method, path in [("put", "/datastores/{name}"), ("put", "/computes/{name}"),
                         ("post", "/data/{name}/versions"), ("post", "/models/{name}/versions")]:
        assert body(method, path).get("$ref", "").startswith("#/components/schemas/"), (method, path)
    files = paths["/datastores/{name}/files/{path}"]
    assert "application/octet-stream" in files["get"]["responses"]["200"]["content"]
    assert "content" not in files["head"]["responses"]["404"]
    assert "text/event-stream" in paths["/jobs/{name}/events/stream"]["get"]["responses"]["200"]["content"]
