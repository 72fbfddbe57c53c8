"""The real azure-ai-ml (pinned in the test extras) runs unchanged against a real Batchpoint server
over TLS, with only the environment ``batchpoint azure-env`` prints.

A server process with ``tls.enabled`` (its own CA), the heart data and MLflow model already in its
default data store's folder (as files already in a storage container), then ``client_flow.py`` in
a separate interpreter: ``MLClient(DefaultAzureCredential(), <sub>, <rg>, <ws>)``, compute,
model and data asset from data store paths, endpoint, deployment, default deployment, invoke with
the data store path and with the data asset, ``jobs.get`` until Completed, ``list_jobs``. Each of
the client's requests is recorded (``recorder/sitecustomize.py``): none may go unanswered (404)
and ``recorded_calls.md`` lists them. Then the blob endpoint (through the server's CONNECT proxy):
model and data from local folders, the upload reused, ``jobs.download(output_name="score")``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, expected_predictions, record_secret, start_server, stop_server

HERE = Path(__file__).resolve().parent
FLOW = HERE / "client_flow.py"
RECORDER = HERE / "recorder"
ENDPOINT = "heart-classifier-batch"


def azure_env(home: Path, key: str | None = None) -> dict[str, str]:
    """What ``eval "$(batchpoint azure-env)"`` exports, read from the CLI's own output."""
    env = {**os.environ, "BATCHPOINT_HOME": str(home)}
    env.pop("BATCHPOINT_SERVER_URL", None)
    env.pop("BATCHPOINT_API_KEY", None)
    if key:
        env["BATCHPOINT_API_KEY"] = key
    out = subprocess.run([str(Path(sys.executable).parent / "batchpoint"), "azure-env"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    exports = dict(re.findall(r"^export ([A-Z_]+)=(.*)$", out.stdout, re.MULTILINE))
    assert set(exports) == {"ARM_CLOUD_METADATA_URL", "AZUREML_CURRENT_CLOUD", "IDENTITY_ENDPOINT",
                            "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "NO_PROXY"}, out.stdout
    return {k: v.strip("'") for k, v in exports.items()}


def run_flow(exports: dict[str, str], log: Path, *args: str, check: bool = True) -> dict[str, Any]:
    """``client_flow.py`` in a clean interpreter: the exports, the recorder, nothing of Batchpoint's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHPOINT_", "AZURE", "IDENTITY_", "MSI_"))}
    env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env.update(exports, AZURE_CALLS_LOG=str(log), PYTHONPATH=str(RECORDER))
    out = subprocess.run([sys.executable, str(FLOW), *args], env=env, capture_output=True, text=True, timeout=280)
    if check:
        assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
        return json.loads(out.stdout.strip().splitlines()[-1])
    return {"returncode": out.returncode, "stderr": out.stderr}


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, heart_model_dir: Path, request: pytest.FixtureRequest):
    home = tmp_path_factory.mktemp("azure-client") / "home"
    from conftest import INDEX_DIR, index_env

    env = {"BATCHPOINT_TLS__ENABLED": "true"}
    if os.environ.get("BATCHPOINT_TEST_AZURITE_BLOB_URL"):  # https storage URLs of the Azurite account
        from fixtures.components import AZURITE_ACCOUNT_NAME

        env["BATCHPOINT_STORAGE__BLOB_ENDPOINTS"] = json.dumps(
            {AZURITE_ACCOUNT_NAME: os.environ["BATCHPOINT_TEST_AZURITE_BLOB_URL"]})
    if (INDEX_DIR / "index.json").is_file():  # a scoring-script deployment's environment: from the local index
        env.update(index_env(request.getfixturevalue("local_index")))
    handle = start_server(home, env)
    try:
        deadline = time.monotonic() + 30
        while "azure_url" not in json.loads((home / "server.json").read_text()):
            assert time.monotonic() < deadline, handle.log()[-3000:]
            time.sleep(0.05)
        store = home / "datastores" / "workspaceblobstore"  # files already in the storage, as in a container
        shutil.copytree(HEART_UNLABELED, store / "heart" / "data")
        shutil.copytree(heart_model_dir, store / "models" / "heart-classifier")
        yield handle
    finally:
        stop_server(handle)


@pytest.fixture(scope="module")
def deployed(tls_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    exports = azure_env(tls_server.home)
    log = tmp_path_factory.mktemp("calls") / "deploy.jsonl"
    return {"exports": exports, "log": log, "result": run_flow(exports, log, "deploy")}


def test_azure_env_points_at_the_running_tls_server(tls_server: Any, deployed: dict[str, Any]) -> None:
    info = json.loads((tls_server.home / "server.json").read_text())
    exports = deployed["exports"]
    assert info["azure_url"].startswith("https://127.0.0.1:")
    assert exports["ARM_CLOUD_METADATA_URL"].startswith(info["azure_url"] + "/metadata/endpoints")
    assert exports["IDENTITY_ENDPOINT"] == info["azure_url"] + "/azure/identity/token"
    assert exports["IDENTITY_HEADER"] == (tls_server.home / "owner.key").read_text().strip()
    assert Path(exports["REQUESTS_CA_BUNDLE"]).read_text().endswith((tls_server.home / "tls" / "ca.pem").read_text())
    # the HTTPS listener refuses a client that does not trust the CA, and serves one that does
    with pytest.raises(httpx.ConnectError):
        httpx.get(info["azure_url"] + "/health")
    assert httpx.get(info["azure_url"] + "/health", verify=exports["REQUESTS_CA_BUNDLE"]).status_code == 200


def test_deploy_with_the_real_client(deployed: dict[str, Any]) -> None:
    assert deployed["result"] == {
        "default_datastore": "workspaceblobstore", "datastore_type": "AzureBlob", "compute": "batch-cluster",
        "compute_max": 2, "model": "heart-classifier:1", "data": "heart-unlabeled:1",
        "default_deployment": "classifier-mlflow", "deployments": ["classifier-mlflow"]}
    sent = calls(deployed["log"])
    assert sent and all(c["url"].startswith("https://") for c in sent)
    assert not [c for c in sent if c["status"] >= 400 and not _expected_miss(c)], sent


def _expected_miss(call: dict[str, Any]) -> bool:
    """The client asks for a model or data container before its first version: a 404 it expects."""
    return call["status"] == 404 and call["method"] == "GET" and re.search(r"/(models|data)/[^/]+\?", call["url"])


@pytest.mark.parametrize("how", ["datastore", "asset"])
def test_invoke_and_poll_with_the_real_client(tls_server: Any, deployed: dict[str, Any], heart_model_dir: Path,
                                             tmp_path: Path, how: str) -> None:
    result = run_flow(deployed["exports"], tmp_path / "invoke.jsonl", "invoke", how)
    assert (result["status"], result["listed"]) == ("Completed", True), (result, tls_server.log()[-3000:])
    job = tls_server.rest().get(f"/jobs/{result['job']}").json()
    assert job["deployment_name"] == "classifier-mlflow"
    file_name = job["outputs"]["score"]["file_name"]
    text = tls_server.rest().get(f"/jobs/{result['job']}/outputs/score/files/{file_name}").text
    (tmp_path / "p.csv").write_text(text)
    score = pd.read_csv(tmp_path / "p.csv", names=["row", "prediction", "file"])
    got = {(r.file, int(r.row)): int(r.prediction) for r in score.itertuples()}
    assert len(got) == HEART_ROWS and got == expected_predictions(heart_model_dir)
    sent = calls(tmp_path / "invoke.jsonl")
    invoke = [c for c in sent if c["method"] == "POST" and c["url"].split("?")[0].endswith(f"/{ENDPOINT}/jobs")]
    assert len(invoke) == 1 and invoke[0]["status"] == 200
    assert not [c for c in sent if c["status"] >= 400], sent


def _key_with(tls_server: Any, principal: str, role: str, scope: str) -> str:
    owner = tls_server.rest()
    assert owner.post("/principals", json={"id": principal, "kind": "service_principal"}).status_code == 201
    assert owner.post("/roleAssignments", json={"principal_id": principal, "role": role,
                                                "scope": scope}).status_code == 201
    return record_secret(owner.post(f"/principals/{principal}/keys", json={}).json()["key"])


def test_invoker_key_is_refused_where_the_native_api_refuses(tls_server: Any, deployed: dict[str, Any],
                                                            tmp_path: Path) -> None:
    key = _key_with(tls_server, "sp:ci-invoker", "Invoker", "workspace")
    native = httpx.put(f"{tls_server.url}/batchEndpoints/other-endpoint", json={},
                       headers={"Authorization": f"Bearer {key}"})
    assert native.status_code == 403
    exports = azure_env(tls_server.home, key)
    assert exports["IDENTITY_HEADER"] == key
    refused = run_flow(exports, tmp_path / "refused.jsonl", "create-endpoint", "other-endpoint", check=False)
    assert refused["returncode"] != 0
    assert "'endpoints/write'" in refused["stderr"] and "sp:ci-invoker" in refused["stderr"]
    put = [c for c in calls(tmp_path / "refused.jsonl") if c["method"] == "PUT"]
    assert [c["status"] for c in put] == [403]
    assert tls_server.rest().get("/batchEndpoints/other-endpoint").status_code == 404


def test_endpoint_invoker_invokes_and_polls_its_job(tls_server: Any, deployed: dict[str, Any],
                                                   tmp_path: Path) -> None:
    """A CI key with Invoker on the one endpoint: invoke and jobs.get work; the workspace document
    (which list_jobs reads first) is refused as natively (workspace/read on the workspace)."""
    key = _key_with(tls_server, "sp:ci-endpoint", "Invoker", f"endpoint:{ENDPOINT}")
    exports = azure_env(tls_server.home, key)
    result = run_flow(exports, tmp_path / "invoke.jsonl", "invoke-only", "datastore")
    assert result["status"] == "Completed", tls_server.log()[-3000:]
    assert tls_server.rest().get(f"/jobs/{result['job']}").json()["created_by"] == "sp:ci-endpoint"
    native = httpx.get(f"{tls_server.url}/workspace", headers={"Authorization": f"Bearer {key}"})
    arm = httpx.get(exports["ARM_CLOUD_METADATA_URL"].split("/metadata")[0] + "/subscriptions/s/resourceGroups/r/"
                    "providers/Microsoft.MachineLearningServices/workspaces/w", verify=exports["REQUESTS_CA_BUNDLE"],
                    headers={"Authorization": f"Bearer {key}"})
    assert native.status_code == arm.status_code == 403


def test_identity_endpoint_refuses_a_wrong_header(tls_server: Any, deployed: dict[str, Any], tmp_path: Path) -> None:
    exports = {**deployed["exports"], "IDENTITY_HEADER": "bpk_notakey_0000"}
    failed = run_flow(exports, tmp_path / "wrong.jsonl", "create-endpoint", "never-made", check=False)
    assert failed["returncode"] != 0
    token = [c for c in calls(tmp_path / "wrong.jsonl") if "/azure/identity/token" in c["url"]]
    assert token and {c["status"] for c in token} == {401}
    assert not [c for c in calls(tmp_path / "wrong.jsonl") if "/batchEndpoints/" in c["url"]]


def _predictions(path: Path) -> dict[tuple[str, int], int]:
    score = pd.read_csv(path, names=["row", "prediction", "file"])
    return {(r.file, int(r.row)): int(r.prediction) for r in score.itertuples()}


def test_local_folders_upload_through_the_blob_endpoint_and_download(tls_server: Any, deployed: dict[str, Any],
                                                                    heart_model_dir: Path, tmp_path: Path) -> None:
    model_dir, data_dir = tmp_path / "model", tmp_path / "data"
    shutil.copytree(heart_model_dir, model_dir)
    shutil.copytree(HEART_UNLABELED, data_dir)
    result = run_flow(deployed["exports"], tmp_path / "upload.jsonl", "upload", str(model_dir), str(data_dir))
    assert result["status"] == "Completed", tls_server.log()[-3000:]
    assert result["model_path"].startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    assert result["data"] == "heart-local-data:1" and result["again"] == "heart-local-data:2"
    assert result["again_path"] == result["data_path"]  # the same content: the upload was reused
    sent = calls(tmp_path / "upload.jsonl")
    blob = [c for c in sent if ".blob.core.batchpoint.internal/" in c["url"]]
    puts = [c for c in blob if c["method"] == "PUT" and "comp=metadata" not in c["url"]]
    assert len(puts) == len([p for p in model_dir.rglob("*") if p.is_file()]) + len(list(data_dir.glob("*.csv")))
    assert [c["status"] for c in blob if "comp=metadata" in c["url"]] == [200, 200]  # each upload confirmed once
    assert not [c for c in sent if c["status"] >= 400 and not _expected_miss(c)
                and not (c["method"] == "HEAD" and c["status"] == 404)], sent
    # the uploaded files are what was sent, in the default data store
    store = tls_server.home / "datastores" / "workspaceblobstore"
    uploaded = store / result["data_path"].split("/paths/", 1)[1]
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(p.name for p in data_dir.iterdir())
    downloads = tmp_path / "downloads"
    run_flow(deployed["exports"], tmp_path / "download.jsonl", "download", result["job"], str(downloads))
    got = _predictions(downloads / "named-outputs" / "score" / "predictions.csv")
    assert len(got) == HEART_ROWS and got == expected_predictions(heart_model_dir)


def test_blob_proxy_reaches_only_the_blob_endpoint(tls_server: Any, deployed: dict[str, Any]) -> None:
    import socket

    proxy = deployed["exports"]["HTTPS_PROXY"].removeprefix("http://")
    host, port = proxy.rsplit(":", 1)
    for target, status in (("example.com:443", b"403"), ("127.0.0.1:22", b"403"),
                           ("acct.blob.core.batchpoint.internal:443", b"200")):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert conn.recv(64).split(b" ")[1] == status, target


GATED_SCORE_PY = """
import os
import time
from pathlib import Path


def init():
    pass


def run(mini_batch):
    deadline = time.monotonic() + 120
    while not Path(os.environ["STREAM_GATE"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [os.path.basename(path) for path in mini_batch]
"""


def test_stream_follows_the_job_and_prints_its_log(tls_server: Any, deployed: dict[str, Any], tmp_path: Path) -> None:
    """``jobs.stream`` on a job still running: its scoring script holds the mini-batch until the
    client has read the job's run details once (a job that finished before the client's first look
    streams nothing, on Azure too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHPOINT_", "AZURE", "IDENTITY_", "MSI_"))}
    env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    log, code, gate = tmp_path / "stream.jsonl", tmp_path / "code", tmp_path / "gate"
    code.mkdir()
    (code / "score.py").write_text(GATED_SCORE_PY)
    env.update(deployed["exports"], AZURE_CALLS_LOG=str(log), PYTHONPATH=str(RECORDER))
    proc = subprocess.Popen([sys.executable, str(FLOW), "stream", str(code), str(gate)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (log.exists() and "/details?" in log.read_text()) and proc.poll() is None:
            assert time.monotonic() < deadline, "the client never read the job's run details"
            time.sleep(0.1)
        gate.touch()
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stderr[-4000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "Completed", tls_server.log()[-3000:]
    assert "Streaming user_logs/std_log_0.txt" in out.stdout and "worker 0 ready" in out.stdout, out.stdout
    assert "Execution Summary" in out.stdout
    logs = [c for c in calls(tmp_path / "stream.jsonl") if "/azure/logs?" in c["url"]]
    assert logs and {c["status"] for c in logs} == {200}


SCORE_PY = """
import os

import pandas as pd


def init():
    pass


def run(mini_batch):
    return [f"{os.path.basename(path)},{len(pd.read_csv(path))}" for path in mini_batch]
"""


def test_scoring_script_deployment_with_code_and_environment(tls_server: Any, deployed: dict[str, Any],
                                                            tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(SCORE_PY)
    result = run_flow(deployed["exports"], tmp_path / "script.jsonl", "script", str(code))
    assert result["status"] == "Completed", tls_server.log()[-3000:]
    sent = calls(tmp_path / "script.jsonl")
    assert len([c for c in sent if c["url"].split("?")[0].endswith("/startPendingUpload")]) == 1  # then by hash
    downloads = tmp_path / "downloads"
    run_flow(deployed["exports"], tmp_path / "download.jsonl", "download", result["job"], str(downloads))
    text = (downloads / "named-outputs" / "score" / "predictions.csv").read_text()
    counts = dict(line.split(",") for line in text.split())
    assert counts == {p.name: str(len(pd.read_csv(p))) for p in HEART_UNLABELED.glob("*.csv")}
    assert sum(int(v) for v in counts.values()) == HEART_ROWS


@pytest.mark.azurite
def test_invoke_with_an_https_storage_url(tls_server: Any, deployed: dict[str, Any], heart_model_dir: Path,
                                         tmp_path: Path, azurite_connection_string: str) -> None:
    """The third spelling: a public container's folder by its https URL, on Azurite (the server maps
    the account with storage.blob_endpoints)."""
    from azure.storage.blob import BlobServiceClient

    from fixtures.components import AZURITE_ACCOUNT_NAME

    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        service.create_container("azclientdata", public_access="container")
    except Exception:  # noqa: BLE001 - already there from an earlier run
        pass
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        service.get_blob_client("azclientdata", f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    url = f"https://{AZURITE_ACCOUNT_NAME}.blob.core.windows.net/azclientdata/heart"
    result = run_flow(deployed["exports"], tmp_path / "url.jsonl", "invoke", url)
    assert (result["status"], result["listed"]) == ("Completed", True), tls_server.log()[-3000:]
    job = tls_server.rest().get(f"/jobs/{result['job']}").json()
    assert next(iter(job["inputs"].values()))["credential_kind"] == "anonymous"
    text = tls_server.rest().get(f"/jobs/{result['job']}/outputs/score/files/{job['outputs']['score']['file_name']}")
    (tmp_path / "p.csv").write_text(text.text)
    got = _predictions(tmp_path / "p.csv")
    assert len(got) == HEART_ROWS and got == expected_predictions(heart_model_dir)


def test_azure_env_restarts_a_plain_local_server_with_https(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plain = start_server(home)
    try:
        assert "azure_url" not in json.loads((home / "server.json").read_text())
        exports = azure_env(home)
        info = json.loads((home / "server.json").read_text())
        assert plain.proc.wait(timeout=30) is not None  # the plain server was stopped
        assert info["pid"] != plain.proc.pid and exports["ARM_CLOUD_METADATA_URL"].startswith(info["azure_url"])
        metadata = httpx.get(exports["ARM_CLOUD_METADATA_URL"], verify=exports["REQUESTS_CA_BUNDLE"]).json()
        assert metadata[0]["resourceManager"] == info["azure_url"] + "/"
        assert azure_env(home) == exports  # running with HTTPS: used as it is
    finally:
        info = json.loads((home / "server.json").read_text()) if (home / "server.json").exists() else {}
        if info.get("pid") and info["pid"] != plain.proc.pid:
            os.kill(info["pid"], 15)
        stop_server(plain, scan=False)


def test_operator_certificate_and_azure_env_for_a_shared_server(tmp_path: Path) -> None:
    """A shared server with the operator's certificate (here one made by another CA); the CI's
    azure-env from --server-url, its key and --ca-file / --blob-proxy: no local server involved."""
    from batchpoint.server.tls import prepare
    from batchpoint.settings import Settings

    operator = prepare(Settings(home=tmp_path / "operator-ca"))  # the operator's own CA and certificate
    home = tmp_path / "shared"
    handle = start_server(home, {"BATCHPOINT_TLS__ENABLED": "true", "BATCHPOINT_TLS__CERT_FILE": str(operator.cert_file),
                                 "BATCHPOINT_TLS__KEY_FILE": str(operator.key_file)})
    try:
        deadline = time.monotonic() + 30
        while "azure_url" not in (info := json.loads((home / "server.json").read_text())):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "ca_bundle" not in info and not (home / "tls" / "ca.pem").exists()  # no CA of its own
        key = (home / "owner.key").read_text().strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPOINT_")}
        env.update(BATCHPOINT_HOME=str(tmp_path / "ci-home"), BATCHPOINT_API_KEY=key)
        cli = [str(Path(sys.executable).parent / "batchpoint"), "azure-env", "--server-url", info["azure_url"],
               "--ca-file", str(operator.ca_file), "--blob-proxy", info["blob_proxy"]]
        out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        exports = {k: v.strip("'") for k, v in re.findall(r"^export ([A-Z_]+)=(.*)$", out.stdout, re.MULTILINE)}
        assert exports["IDENTITY_HEADER"] == key and exports["HTTPS_PROXY"] == info["blob_proxy"]
        assert not (tmp_path / "ci-home" / "server.json").exists()  # no local server was started
        metadata = httpx.get(exports["ARM_CLOUD_METADATA_URL"], verify=exports["REQUESTS_CA_BUNDLE"])
        assert metadata.json()[0]["resourceManager"] == info["azure_url"] + "/"
        plain = subprocess.run([*cli[:4]], env={**env, "BATCHPOINT_API_KEY": ""}, capture_output=True, text=True,
                               timeout=60)
        assert plain.returncode != 0 and "BATCHPOINT_API_KEY" in plain.stderr
        http = subprocess.run([cli[0], "azure-env", "--server-url", handle.url], env=env, capture_output=True,
                              text=True, timeout=60)
        assert http.returncode != 0 and "not HTTPS" in http.stderr
    finally:
        stop_server(handle)
