"""The Azure-shaped API in process (the real app over SQLite, FastAPI's TestClient): its routes, its
authorisation against the native API's, ARM's path rules, the cloud documents and the identity
endpoint. The real client's end-to-end flow is in test_real_client.py.

``ARM_ROUTES`` is written by hand: each ARM route with the native route it mirrors. For every role
below, the ARM route answers 403 exactly where its native twin does (and 401 to anonymous callers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fixtures.inproc import workspace
from auth.test_authorization_matrix import _flatten

WS = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
STORE = "azureml://datastores/workspaceblobstore/paths"

# (method, ARM path under the workspace, ARM body) -> (method, native path, native body); {who}: the caller's name
ARM_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", ""): ("GET", "/workspace"),
    ("GET", "/datastores"): ("GET", "/datastores"),
    ("GET", "/datastores/{name}"): ("GET", "/datastores/workspaceblobstore"),
    ("POST", "/datastores/{name}/listsecrets"): ("POST", "/datastores/workspaceblobstore/listSecrets"),
    ("GET", "/models"): ("GET", "/models"),
    ("GET", "/models/{name}"): ("GET", "/models/epa-model"),
    ("GET", "/models/{name}/versions"): ("GET", "/models?name=epa-model"),
    ("GET", "/models/{name}/versions/{version}"): ("GET", "/models/epa-model/versions/1"),
    ("PUT", "/models/{name}/versions/{version}"): ("POST", "/models/m-{who}/versions"),
    ("GET", "/data"): ("GET", "/data"),
    ("GET", "/data/{name}"): ("GET", "/data/inputs"),
    ("GET", "/data/{name}/versions"): ("GET", "/data?name=inputs"),
    ("GET", "/data/{name}/versions/{version}"): ("GET", "/data/inputs/versions/1"),
    ("PUT", "/data/{name}/versions/{version}"): ("POST", "/data/d-{who}/versions"),
    ("GET", "/computes"): ("GET", "/computes"),
    ("GET", "/computes/{name}"): ("GET", "/computes/cpu"),
    ("PUT", "/computes/{name}"): ("PUT", "/computes/c-{who}"),
    ("GET", "/batchendpoints"): ("GET", "/batchEndpoints"),
    ("GET", "/batchendpoints/{name}"): ("GET", "/batchEndpoints/epa"),
    ("PUT", "/batchendpoints/{name}"): ("PUT", "/batchEndpoints/epa"),
    ("PATCH", "/batchendpoints/{name}"): ("PATCH", "/batchEndpoints/epa"),
    ("DELETE", "/batchendpoints/{name}"): ("DELETE", "/batchEndpoints/gone-{who}"),
    ("GET", "/batchendpoints/{endpoint}/deployments"): ("GET", "/batchEndpoints/epa/deployments"),
    ("GET", "/batchendpoints/{endpoint}/deployments/{name}"): ("GET", "/batchEndpoints/epa/deployments/echo"),
    ("PUT", "/batchendpoints/{endpoint}/deployments/{name}"): ("PUT", "/batchEndpoints/epa/deployments/echo"),
    ("DELETE", "/batchendpoints/{endpoint}/deployments/{name}"): ("DELETE", "/batchEndpoints/epa/deployments/gone-{who}"),
    ("POST", "/batchendpoints/{name}/jobs"): ("POST", "/batchEndpoints/epa/invoke"),
    ("GET", "/batchendpoints/{name}/jobs"): ("GET", "/batchEndpoints/epa/jobs"),
    ("GET", "/jobs"): ("GET", "/jobs"),
    ("GET", "/jobs/{name}"): ("GET", "/jobs/{job}"),
    ("POST", "/rundata"): ("GET", "/jobs/{job}"),
    ("GET", "/runs/{name}/details"): ("GET", "/jobs/{job}"),
    ("GET", "/codes/{name}/versions"): ("GET", "/data"),  # no native codes: the same permission's route
    ("GET", "/codes/{name}/versions/{version}"): ("GET", "/data"),
    ("PUT", "/codes/{name}/versions/{version}"): ("POST", "/data/dc-{who}/versions"),
    ("POST", "/codes/{name}/versions/{version}/startpendingupload"): ("POST", "/data/dp-{who}/versions"),
    ("GET", "/environments/{name}/versions/{version}"): ("GET", "/environments"),
    ("PUT", "/environments/{name}/versions/{version}"): ("POST", "/environments/e-{who}/versions"),
    ("POST", "/dataversion/batchGetResolvedUris"): ("GET", "/jobs/{job}"),
}

# the concrete ARM call of each route (path under the workspace, body)
ARM_CALLS: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/datastores/{name}"): ("/datastores/workspaceblobstore", None),
    ("POST", "/datastores/{name}/listsecrets"): ("/datastores/workspaceblobstore/listSecrets", None),
    ("GET", "/models/{name}"): ("/models/epa-model", None),
    ("GET", "/models/{name}/versions"): ("/models/epa-model/versions", None),
    ("GET", "/models/{name}/versions/{version}"): ("/models/epa-model/versions/1", None),
    ("PUT", "/models/{name}/versions/{version}"): ("/models/am-{who}/versions/1", {"properties": {
        "modelUri": f"{STORE}/setup/epa/model", "modelType": "custom_model"}}),
    ("GET", "/data/{name}"): ("/data/inputs", None),
    ("GET", "/data/{name}/versions"): ("/data/inputs/versions", None),
    ("GET", "/data/{name}/versions/{version}"): ("/data/inputs/versions/1", None),
    ("PUT", "/data/{name}/versions/{version}"): ("/data/ad-{who}/versions/1", {"properties": {
        "dataUri": f"{STORE}/inputs", "dataType": "uri_folder"}}),
    ("GET", "/computes/{name}"): ("/computes/cpu", None),
    ("PUT", "/computes/{name}"): ("/computes/ac-{who}", {"properties": {"computeType": "AmlCompute", "properties": {
        "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}}}}),
    ("GET", "/batchendpoints/{name}"): ("/batchEndpoints/epa", None),
    ("PUT", "/batchendpoints/{name}"): ("/batchEndpoints/epa", {"properties": {"authMode": "AADToken", "defaults": {"deploymentName": "echo"}}}),
    ("PATCH", "/batchendpoints/{name}"): ("/batchEndpoints/epa", {"properties": {"description": "patched"}}),
    ("DELETE", "/batchendpoints/{name}"): ("/batchEndpoints/gone-{who}", None),
    ("GET", "/batchendpoints/{endpoint}/deployments"): ("/batchEndpoints/epa/deployments", None),
    ("GET", "/batchendpoints/{endpoint}/deployments/{name}"): ("/batchEndpoints/epa/deployments/echo", None),
    ("PUT", "/batchendpoints/{endpoint}/deployments/{name}"): ("/batchEndpoints/epa/deployments/echo", None),
    ("DELETE", "/batchendpoints/{endpoint}/deployments/{name}"): ("/batchEndpoints/epa/deployments/gone-{who}", None),
    ("POST", "/batchendpoints/{name}/jobs"): ("/batchEndpoints/epa/jobs", {"properties": {"inputData": {
        "data": {"jobInputType": "UriFolder", "uri": f"{STORE}/inputs"}}}}),
    ("GET", "/batchendpoints/{name}/jobs"): ("/batchEndpoints/epa/jobs", None),
    ("GET", "/jobs/{name}"): ("/jobs/{job}", None),
    ("POST", "/rundata"): ("/rundata", {"runId": "{job}"}),
    ("GET", "/runs/{name}/details"): ("/runs/{job}/details", None),
    ("GET", "/codes/{name}/versions"): ("/codes/nocode/versions", None),
    ("GET", "/codes/{name}/versions/{version}"): ("/codes/nocode/versions/1", None),
    ("PUT", "/codes/{name}/versions/{version}"): ("/codes/ac-{who}/versions/1", {"properties": {
        "codeUri": f"{STORE}/setup/epa/code"}}),
    ("POST", "/codes/{name}/versions/{version}/startpendingupload"): ("/codes/ap-{who}/versions/1/startPendingUpload",
                                                                      {"pendingUploadType": "TemporaryBlobReference"}),
    ("GET", "/environments/{name}/versions/{version}"): ("/environments/noenv/versions/1", None),
    ("PUT", "/environments/{name}/versions/{version}"): ("/environments/ae-{who}/versions/1", {"properties": {
        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"}}),
    ("POST", "/dataversion/batchGetResolvedUris"): ("/dataversion/batchGetResolvedUris", {"values": [
        "azureml://locations/local/workspaces/batchpoint/data/azureml_{job}_output_data_score/versions/1"]}),
}

NATIVE_BODIES: dict[str, Any] = {
    "/models/m-{who}/versions": {"version": "1", "path": f"{STORE}/setup/epa/model"},
    "/data/d-{who}/versions": {"version": "1", "path": f"{STORE}/inputs"},
    "/computes/c-{who}": {"max_instances": 2},
    "/data/dc-{who}/versions": {"version": "1", "path": f"{STORE}/inputs"},
    "/data/dp-{who}/versions": {"version": "1", "path": f"{STORE}/inputs"},
    "/environments/e-{who}/versions": {"version": "1", "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"},
    "/batchEndpoints/epa": {"defaults": {"deployment_name": "echo"}},
    "/batchEndpoints/epa/invoke": {"properties": {"InputData": {"data": {"JobInputType": "UriFolder",
                                                                         "Uri": f"{STORE}/inputs"}}}},
}

ROLES = [("reader", "Reader", "workspace"), ("invoker", "Invoker", "endpoint:epa"),
         ("contributor", "Contributor", "workspace"), ("datareader", "DataReader", "datastore:workspaceblobstore")]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    with workspace(tmp_path_factory.mktemp("arm")) as w:
        w.deploy("epa")
        w.put_file("inputs/a.txt", b"a\n")
        assert w.owner.post("/data/inputs/versions", json={"version": "1", "path": f"{STORE}/inputs"}).status_code == 201
        assert w.owner.put("/computes/cpu", json={"max_instances": 1}).status_code == 200
        job = w.owner.post("/batchEndpoints/epa/invoke", json=NATIVE_BODIES["/batchEndpoints/epa/invoke"]).json()["name"]
        w.job = job  # type: ignore[attr-defined]
        w.callers = {who: w.as_role(who, role, scope) for who, role, scope in ROLES}  # type: ignore[attr-defined]
        yield w


def _formatted(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.replace("{who}", names["who"]).replace("{job}", names["job"])
    if isinstance(value, dict):
        return {k: _formatted(v, **names) for k, v in value.items()}
    if isinstance(value, list):
        return [_formatted(v, **names) for v in value]
    return value


def _deployment_body(w: Any) -> dict[str, Any]:
    arm = w.owner.get(WS + "/batchEndpoints/epa/deployments/echo")
    assert arm.status_code == 200, arm.text
    return {"properties": {k: v for k, v in arm.json()["properties"].items() if k != "provisioningState"}}


def test_hand_table_matches_the_app():
    from batchpoint.server.app import create_app

    routes = set()
    for prefix, route in _flatten(create_app().routes):
        path = prefix + getattr(route, "path", "")
        if path.startswith("/_arm/ws") and "{rest:path}" not in path:
            routes |= {(m, path[len("/_arm/ws"):]) for m in route.methods if m != "HEAD"}
    assert routes == set(ARM_ROUTES)


@pytest.mark.parametrize("key", sorted(ARM_ROUTES), ids=[f"{m} {p or '/'}" for m, p in sorted(ARM_ROUTES)])
def test_refused_exactly_where_the_native_api_refuses(ws: Any, key: tuple[str, str]) -> None:
    method, _ = key
    arm_path, arm_body = ARM_CALLS.get(key, (key[1], None))
    native_method, native_path = ARM_ROUTES[key]
    for who, _, _ in ROLES:
        client = ws.callers[who]
        body = _deployment_body(ws) if key == ("PUT", "/batchendpoints/{endpoint}/deployments/{name}") else arm_body
        body = _formatted(body, who=who, job=ws.job)
        arm = client.request(method, WS + arm_path.format(who=who, job=ws.job), json=body)
        native_body = NATIVE_BODIES.get(native_path)
        if native_path.endswith("/deployments/echo") and native_method == "PUT":
            native_body = {k: v for k, v in ws.owner.get(native_path).json().items()
                           if k not in ("id", "created_at", "updated_at", "provisioning_state", "name", "endpoint_name")}
        native = client.request(native_method, native_path.format(who=who, job=ws.job), json=native_body)
        said = f"{who}: ARM {method} {arm_path} -> {arm.status_code} {arm.text[:300]}; native -> {native.status_code}"
        assert (arm.status_code == 403) == (native.status_code == 403), said
        if arm.status_code == 403:
            if native_method == method:
                assert arm.json()["error"]["message"] == native.json()["error"]["message"], said
        anonymous = ws.owner.__class__(ws.owner.app, raise_server_exceptions=False)
        assert anonymous.request(method, WS + arm_path.format(who=who, job=ws.job), json=body).status_code == 401


def test_owner_reads_every_collection(ws: Any) -> None:
    for path in ("", "/datastores", "/models", "/data", "/computes", "/batchEndpoints", "/jobs",
                 "/batchEndpoints/epa/deployments", "/batchEndpoints/epa/jobs"):
        response = ws.owner.get(WS + path)
        assert response.status_code == 200, f"{path}: {response.text}"
        if path:
            assert set(response.json()) == {"value", "nextLink"} and response.json()["value"], path


def test_paths_are_case_insensitive_and_any_api_version_and_names_echo_the_caller(ws: Any) -> None:
    odd = WS.replace("resourceGroups", "RESOURCEGROUPS").replace("Microsoft.MachineLearningServices",
                                                                 "microsoft.machinelearningservices")
    response = ws.owner.get(odd + "/BATCHENDPOINTS/epa/Deployments/echo", params={"api-version": "1999-01-01"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == WS + "/batchEndpoints/epa/deployments/echo"
    assert body["properties"]["provisioningState"] == "Succeeded"
    other = ws.owner.get("/subscriptions/s2/resourceGroups/r2/providers/Microsoft.MachineLearningServices/"
                         "workspaces/w2/datastores", params={"isDefault": "true"}).json()["value"]
    assert [d["name"] for d in other] == ["workspaceblobstore"]
    assert other[0]["id"].startswith("/subscriptions/s2/resourceGroups/r2/")
    assert other[0]["properties"]["isDefault"] is True
    assert other[0]["properties"]["datastoreType"] == "AzureBlob"
    assert other[0]["properties"]["credentials"] == {"credentialsType": "None"}
    assert ws.owner.get(WS + "/datastores", params={"isDefault": "false"}).json()["value"] == []


def test_unknown_route_and_missing_resource_answer_in_arm_error_shape(ws: Any) -> None:
    response = ws.owner.get(WS + "/onlineEndpoints/x")
    assert response.status_code == 404
    assert set(response.json()) == {"error"} and set(response.json()["error"]) >= {"code", "message"}
    assert "onlineEndpoints" in response.json()["error"]["message"]
    missing = ws.owner.get(WS + "/batchEndpoints/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]


def test_model_versions_number_from_the_container_and_a_re_put_is_idempotent(ws: Any) -> None:
    assert ws.owner.get(WS + "/models/fresh").status_code == 404  # the client then starts at version 1
    body = {"properties": {"modelUri": f"{STORE}/setup/epa/model", "modelType": "custom_model", "description": "d"}}
    first = ws.owner.put(WS + "/models/fresh/versions/1", json=body)
    assert first.status_code == 200, first.text
    again = ws.owner.put(WS + "/models/fresh/versions/1", json=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    container = ws.owner.get(WS + "/models/fresh").json()["properties"]
    assert (container["latestVersion"], container["nextVersion"]) == ("1", "2")
    changed = {"properties": {**body["properties"], "modelUri": f"{STORE}/inputs"}}
    conflict = ws.owner.put(WS + "/models/fresh/versions/1", json=changed)
    assert conflict.status_code == 409 and "already exists" in conflict.json()["error"]["message"]
    # the native API sees the same model
    assert ws.owner.get("/models/fresh/versions/1").json()["description"] == "d"


def test_long_azureml_uris_and_arm_asset_ids_reach_the_native_parser(ws: Any) -> None:
    long_uri = ("azureml://subscriptions/sub-1/resourcegroups/rg-1/workspaces/ws-1/datastores/workspaceblobstore"
                "/paths/inputs")
    created = ws.owner.put(WS + "/data/long/versions/1", json={"properties": {"dataUri": long_uri,
                                                                               "dataType": "uri_folder"}})
    assert created.status_code == 200, created.text
    assert ws.owner.get("/data/long/versions/1").json()["path"] == f"{STORE}/inputs"
    invoke = ws.owner.post(WS + "/batchEndpoints/epa/jobs", json={"properties": {
        "inputData": {"data": {"jobInputType": "UriFolder", "uri": WS + "/data/long/versions/1"}},
        "miniBatchSize": 3, "retrySettings": {"maxRetries": 1, "timeout": "PT2M"}, "compute": {"instanceCount": 1},
        "name": "arm-job-1", "properties": {"experimentName": "exp-a"}}})
    assert invoke.status_code == 200, invoke.text
    assert invoke.json()["name"] == "arm-job-1" and invoke.json()["properties"]["jobType"] == "Pipeline"
    native = ws.owner.get("/jobs/arm-job-1").json()
    assert native["inputs"]["data"]["path"] == "azureml:long:1"
    assert (native["settings"]["mini_batch_size"], native["settings"]["retry_settings"]) == (3, {"max_retries": 1,
                                                                                               "timeout": 120})
    assert native["experiment_name"] == "exp-a"
    bad = ws.owner.post(WS + "/batchEndpoints/epa/jobs", json={"properties": {
        "inputData": {"data": {"jobInputType": "UriFolder", "uri": f"{STORE}/inputs"}},
        "retrySettings": {"timeout": "thirty seconds"}}})
    assert bad.status_code == 400 and "PT30S" in bad.json()["error"]["message"]


def test_cloud_metadata_names_this_server(ws: Any) -> None:
    response = ws.owner.__class__(ws.owner.app).get("/metadata/endpoints", params={"api-version": "2020-06-01"})
    assert response.status_code == 200
    [cloud] = response.json()
    assert cloud["name"] == "Batchpoint" and cloud["resourceManager"] == "http://testserver/"
    assert cloud["suffixes"]["storage"] and cloud["authentication"]["loginEndpoint"]
    assert len(cloud["portal"].split(".")) >= 3  # the client derives its cloud suffix from the portal's host


def test_identity_endpoint_gives_a_token_only_for_a_valid_key(ws: Any) -> None:
    anonymous = ws.owner.__class__(ws.owner.app, raise_server_exceptions=False)
    key = ws.owner.headers["Authorization"].split(" ", 1)[1]
    good = anonymous.get("/azure/identity/token", params={"resource": "https://ml.azure.com"},
                         headers={"X-IDENTITY-HEADER": key})
    assert good.status_code == 200 and good.json()["access_token"] == key
    assert int(good.json()["expires_on"]) > 0
    for header, status in (({"X-IDENTITY-HEADER": "bpk_nope_nope"}, 401), ({"X-IDENTITY-HEADER": "guess"}, 401),
                           ({}, 400)):
        refused = anonymous.get("/azure/identity/token", headers=header)
        assert refused.status_code == status, refused.text
        assert "access_token" not in refused.text
    assert "IDENTITY_HEADER" in anonymous.get("/azure/identity/token").json()["error"]["message"]


def test_generated_certificate_chains_to_the_ca_and_names_the_hosts(tmp_path: Path) -> None:
    import ssl

    from batchpoint.server.tls import prepare, server_context
    from batchpoint.settings import Settings

    settings = Settings(home=tmp_path / "home")
    files = prepare(settings)
    assert files.ca_file and files.bundle_file
    assert (files.key_file.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "home" / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    bundle = files.bundle_file.read_text()
    assert files.ca_file.read_text() in bundle and bundle.count("BEGIN CERTIFICATE") > 10  # certifi's too
    again = prepare(settings)  # kept, not remade
    assert again.cert_file.read_bytes() == files.cert_file.read_bytes()

    context = server_context(files)
    assert _handshake(context, files.ca_file, "127.0.0.1") == b"ok"
    assert _handshake(context, files.ca_file, "localhost") == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, files.ca_file, "example.com")  # not a name of the certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, None, "127.0.0.1")  # certifi alone does not trust the local CA


def _handshake(context: Any, ca_file: Path | None, name: str) -> bytes:
    import socket
    import ssl
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        with socket.create_connection(listener.getsockname()) as raw, \
                client.wrap_socket(raw, server_hostname=name) as tls:
            return tls.recv(2)
    finally:
        thread.join(5)
        listener.close()


def test_operator_certificate_needs_both_files(tmp_path: Path) -> None:
    from batchpoint.exceptions import ValidationError
    from batchpoint.server.tls import prepare
    from batchpoint.settings import Settings

    with pytest.raises(ValidationError, match="go together"):
        prepare(Settings(home=tmp_path, tls={"cert_file": tmp_path / "c.pem"}))
    with pytest.raises(ValidationError, match="does not exist"):
        prepare(Settings(home=tmp_path, tls={"cert_file": tmp_path / "c.pem", "key_file": tmp_path / "k.pem"}))


def test_arm_durations() -> None:
    from batchpoint.exceptions import ValidationError
    from batchpoint.server.azure_api.arm import seconds_of

    assert [seconds_of(v, "f") for v in ("PT30S", "PT2M", "P1DT1H", "pt1.5s", 45, None)] == [30, 120, 90000, 1, 45,
                                                                                              None]
    for bad in ("30", "PT", "P1Y", "soon"):
        with pytest.raises(ValidationError, match=re.escape(f"'{bad}'")):
            seconds_of(bad, "f")


# ---- the blob endpoint (in process: the Host header names the blob host) ----------------------------

BLOB = "https://batchpointlocal.blob.core.batchpoint.internal/workspaceblobstore"


def _client_hash(folder: Path) -> str:
    from azure.ai.ml._utils._asset_utils import get_object_hash  # the real client's own hash

    return get_object_hash(folder)


def _upload(client: Any, folder: Path, digest: str) -> list[int]:
    statuses = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f"LocalUpload/{digest}/{folder.name}/{path.relative_to(folder).as_posix()}"
        statuses.append(client.put(f"{BLOB}/{rel}", content=path.read_bytes(),
                                   headers={"x-ms-blob-type": "BlockBlob"}).status_code)
    return statuses


def _folder(tmp_path: Path, first: str = "alpha") -> Path:
    folder = tmp_path / "payload"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(f"{first}\n")
    (folder / "sub" / "B.txt").write_text("beta\n")
    return folder


def test_blob_upload_is_confirmed_only_when_the_content_matches_its_hash(ws: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    digest = _client_hash(folder)
    first = f"LocalUpload/{digest}/payload/a.txt"
    assert ws.owner.head(f"{BLOB}/{first}").status_code == 404
    assert _upload(ws.owner, folder, digest) == [201, 201]
    # a registration before the client confirmed the upload is refused
    early = ws.owner.put(WS + "/data/early/versions/1", json={"properties": {
        "dataUri": f"{STORE}/LocalUpload/{digest}/payload", "dataType": "uri_folder"}})
    assert early.status_code == 409 and "not completed" in early.json()["error"]["message"]
    done = ws.owner.put(f"{BLOB}/{first}?comp=metadata", headers={"x-ms-meta-upload_status": "completed",
                                                                   "x-ms-meta-name": "n", "x-ms-meta-version": "1"})
    assert done.status_code == 200, done.text
    head = ws.owner.head(f"{BLOB}/{first}")
    assert head.status_code == 200 and head.headers["x-ms-meta-upload_status"] == "completed"
    assert head.headers["content-length"] == "6"
    # written once: no file of a confirmed upload can be sent again
    again = ws.owner.put(f"{BLOB}/{first}", content=b"other\n", headers={"x-ms-blob-type": "BlockBlob"})
    assert again.status_code == 409 and again.headers["x-ms-error-code"] == "BlobAlreadyExists"
    assert ws.owner.get(f"{BLOB}/{first}").content == b"alpha\n"
    ranged = ws.owner.get(f"{BLOB}/{first}", headers={"x-ms-range": "bytes=1-3"})
    assert ranged.status_code == 206 and ranged.content == b"lph"
    listed = ws.owner.get(BLOB, params={"restype": "container", "comp": "list", "prefix": f"LocalUpload/{digest}/",
                                        "include": "metadata"})
    assert listed.status_code == 200 and listed.text.count("<Blob>") == 2 and "upload_status" in listed.text
    created = ws.owner.put(WS + "/data/uploaded/versions/1", json={"properties": {
        "dataUri": f"{STORE}/LocalUpload/{digest}/payload", "dataType": "uri_folder"}})
    assert created.status_code == 200, created.text


def test_blob_upload_whose_content_does_not_match_is_removed(ws: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "gamma")
    digest = _client_hash(folder)
    (folder / "a.txt").write_text("tampered\n")  # sent content differs from what the name promises
    assert _upload(ws.owner, folder, digest) == [201, 201]
    refused = ws.owner.put(f"{BLOB}/LocalUpload/{digest}/payload/a.txt?comp=metadata",
                           headers={"x-ms-meta-upload_status": "completed"})
    assert refused.status_code == 409 and "does not hold what its name promises" in refused.text
    assert ws.owner.head(f"{BLOB}/LocalUpload/{digest}/payload/a.txt").status_code == 404
    assert not (ws.home / "datastores" / "workspaceblobstore" / "LocalUpload" / digest).exists()


def test_blob_blocks_are_assembled_in_list_order(ws: Any) -> None:
    path = f"{BLOB}/big/file.bin"
    for block, data in (("QkxPQ0sx", b"one-"), ("QkxPQ0sy", b"two")):
        assert ws.owner.put(path, params={"comp": "block", "blockid": block}, content=data).status_code == 201
    body = "<?xml version='1.0'?><BlockList><Latest>QkxPQ0sx</Latest><Latest>QkxPQ0sy</Latest></BlockList>"
    assert ws.owner.put(path, params={"comp": "blocklist"}, content=body).status_code == 201
    assert ws.owner.get(path).content == b"one-two"
    bad = ws.owner.put(path, params={"comp": "blocklist"}, content="<BlockList><Latest>bm9wZQ==</Latest></BlockList>")
    assert bad.status_code == 400 and bad.headers["x-ms-error-code"] == "InvalidInput"


def test_blob_endpoint_permissions(ws: Any, tmp_path: Path) -> None:
    reader, invoker = ws.callers["reader"], ws.callers["invoker"]
    assert reader.get(f"{BLOB}/inputs/a.txt").status_code == 403  # Reader: no data/read, as natively
    assert ws.callers["datareader"].get(f"{BLOB}/inputs/a.txt").content == b"a\n"
    assert invoker.put(f"{BLOB}/inputs/x.txt", content=b"x").status_code == 403  # datastores/write
    folder = _folder(tmp_path, "delta")
    assert _upload(invoker, folder, _client_hash(folder)) == [201, 201]  # uploading is part of invoking
    anonymous = ws.owner.__class__(ws.owner.app, raise_server_exceptions=False)
    assert anonymous.get(f"{BLOB}/inputs/a.txt").status_code == 401
    assert ws.owner.get("https://other.blob.core.batchpoint.internal/nostore/a.txt").status_code == 404


def test_signed_log_urls_of_run_details(ws: Any) -> None:
    import time
    from urllib.parse import parse_qs, urlencode, urlsplit

    deadline = time.monotonic() + 120
    while ws.owner.get(f"/jobs/{ws.job}").json()["status"] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    details = ws.owner.get(f"/history/v1.0{WS}/runs/{ws.job}/details").json()
    assert details["runId"] == ws.job and details["status"] == "Completed"
    url = details["logFiles"]["user_logs/std_log_0.txt"]
    anonymous = ws.owner.__class__(ws.owner.app, raise_server_exceptions=False)
    log = anonymous.get(url)  # no Authorization: the URL is signed
    assert log.status_code == 200 and "worker 0" in log.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    for change in ({"log": "worker-1.log"}, {"pr": "user:owner-impostor"}, {"se": str(int(query["se"]) + 1)},
                   {"sig": "0" * 64}, {"se": "1", "sig": query["sig"]}):
        forged = anonymous.get("/azure/logs?" + urlencode({**query, **change}))
        assert forged.status_code == 401, (change, forged.text)
    # a Reader sees the run (jobs/read) but not its logs' contents (jobs/outputs/read), as natively
    reader = ws.callers["reader"].get(f"/history/v1.0{WS}/runs/{ws.job}/details")
    assert reader.status_code == 200
    refused = anonymous.get(reader.json()["logFiles"]["user_logs/std_log_0.txt"])
    assert refused.status_code == 403 and "jobs/outputs/read" in refused.text
    assert ws.callers["reader"].get(f"/jobs/{ws.job}/logs/worker-0.log").status_code == 403
    # not the Invoker's own job: no run details for it
    assert ws.callers["invoker"].get(f"/history/v1.0{WS}/runs/{ws.job}/details").status_code == 403


# ---- code uploads: startPendingUpload's SAS and the content hash ----------------------------------------

def _code_hash(folder: Path) -> str:
    from azure.ai.ml._utils._asset_utils import get_content_hash  # the real client's own hash

    return get_content_hash(folder)


def _pending(client: Any, name: str) -> tuple[str, str]:
    answer = client.post(f"{WS}/codes/{name}/versions/1/startPendingUpload",
                         json={"pendingUploadType": "TemporaryBlobReference"})
    assert answer.status_code == 200, answer.text
    ref = answer.json()["blobReferenceForConsumption"]
    return ref["blobUri"], ref["credential"]["sasUri"].split("?", 1)[1]


def test_code_upload_with_the_sas_and_its_hash(ws: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "code")
    blob_uri, sas = _pending(ws.owner, "code-a")
    anonymous = ws.owner.__class__(ws.owner.app, raise_server_exceptions=False)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        url = f"{blob_uri}/payload/{path.relative_to(folder).as_posix()}"
        assert anonymous.put(f"{url}?{sas}", content=path.read_bytes()).status_code == 201
        assert anonymous.put(url, content=b"x").status_code == 401  # no SAS, no key
    forged = sas.replace("sig=", "sig=0")
    assert anonymous.put(f"{blob_uri}/payload/z.txt?{forged}", content=b"z").status_code == 401
    other, _ = _pending(ws.owner, "code-b")
    assert anonymous.put(f"{other}/payload/z.txt?{sas}", content=b"z").status_code == 401  # another container
    body = {"properties": {"codeUri": f"{blob_uri}/payload", "isAnonymous": True,
                           "properties": {"hash_sha256": _code_hash(folder), "hash_version": 202208}}}
    created = ws.owner.put(f"{WS}/codes/code-a/versions/1", json=body)
    assert created.status_code == 200, created.text
    container = blob_uri.rsplit("/", 1)[1]
    assert created.json()["properties"]["codeUri"] == (f"azureml://datastores/workspaceblobstore/paths/LocalUpload/"
                                                       f"{container.removeprefix('code-')}/payload")
    upload = ws.owner.get(f"/uploads/{container.removeprefix('code-')}").json()  # a native upload now
    assert (upload["status"], upload["files"]) == ("Completed", 2)
    found = ws.owner.get(f"{WS}/codes/anything/versions", params={"hash": _code_hash(folder), "hashVersion": "202208"})
    assert [v["id"].rsplit("/codes/", 1)[1] for v in found.json()["value"]] == ["code-a/versions/1"]


def test_code_whose_content_does_not_match_its_hash_is_refused(ws: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "code2")
    blob_uri, sas = _pending(ws.owner, "code-c")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        url = f"{blob_uri}/payload/{path.relative_to(folder).as_posix()}?{sas}"
        assert ws.owner.put(url, content=b"not what was hashed").status_code == 201
    body = {"properties": {"codeUri": f"{blob_uri}/payload",
                           "properties": {"hash_sha256": _code_hash(folder), "hash_version": "202208"}}}
    refused = ws.owner.put(f"{WS}/codes/code-c/versions/1", json=body)
    assert refused.status_code == 409 and "does not match the hash" in refused.json()["error"]["message"]
    container = blob_uri.rsplit("/", 1)[1]
    assert not (ws.home / "datastores" / "workspaceblobstore" / "LocalUpload" / container.removeprefix("code-")).exists()


def _wait(ws: Any, job: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 120
    while (row := ws.owner.get(f"/jobs/{job}").json())["status"] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return row


def test_job_outputs_on_the_blob_endpoint_follow_the_native_job_rules(ws: Any) -> None:
    """Inside azureml/<job>/ a caller without data/read reads what GET /jobs/<job>/outputs allows it."""
    owner_job = _wait(ws, ws.job)
    invoked = ws.callers["invoker"].post(WS + "/batchEndpoints/epa/jobs", json=ARM_CALLS[
        ("POST", "/batchendpoints/{name}/jobs")][1])
    assert invoked.status_code == 200, invoked.text
    own_job = _wait(ws, invoked.json()["name"])
    for job in (owner_job, own_job):
        output = job["outputs"]["score"]
        folder = output["path"].split("/paths/", 1)[1].strip("/")
        url = f"{BLOB}/{folder}/{output['file_name']}"
        for who in ("invoker", "contributor", "reader", "datareader"):
            native = ws.callers[who].get(f"/jobs/{job['name']}/outputs/score/files/{output['file_name']}")
            blob = ws.callers[who].get(url)
            allowed = native.status_code == 200 or who == "datareader"  # data/read reads the store itself
            assert (blob.status_code == 200) == allowed, (who, job["name"], blob.status_code, native.status_code)
            listed = ws.callers[who].get(BLOB, params={"restype": "container", "comp": "list", "prefix": folder + "/"})
            assert (listed.status_code == 200) == allowed, (who, listed.status_code)
    assert ws.callers["invoker"].get(f"{BLOB}/inputs/a.txt").status_code == 403  # outside a job's outputs


def test_a_confirmed_upload_is_a_native_upload_held_by_who_sent_or_found_it(ws: Any, tmp_path: Path) -> None:
    """The upload area's rules: registering from another principal's upload needs data/read, unless one
    holds it (sent it, or found it confirmed, as the client does before sending the same content)."""
    folder = _folder(tmp_path, "epsilon")
    digest = _client_hash(folder)
    assert _upload(ws.owner, folder, digest) == [201, 201]
    first = f"LocalUpload/{digest}/payload/a.txt"
    assert ws.owner.put(f"{BLOB}/{first}?comp=metadata", headers={"x-ms-meta-upload_status": "completed"}).status_code \
        == 200
    native = ws.owner.get(f"/uploads/{digest}").json()
    assert (native["status"], native["files"], native["type"]) == ("Completed", 2, "uri_folder")
    contributor = ws.callers["contributor"]  # no data/read
    body = {"properties": {"dataUri": f"{STORE}/LocalUpload/{digest}/payload", "dataType": "uri_folder"}}
    refused = contributor.put(WS + "/data/theirs/versions/1", json=body)
    assert refused.status_code == 403 and "data/read" in refused.json()["error"]["message"]
    assert contributor.head(f"{BLOB}/{first}").status_code == 200  # the client's check before sending
    assert contributor.put(WS + "/data/theirs/versions/1", json=body).status_code == 200
