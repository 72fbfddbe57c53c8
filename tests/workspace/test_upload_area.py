"""The upload area is content-addressed and write-once (``workspace/uploads.py``).

Reproduces "any Invoker can rewrite uploaded data and scoring code": before the fix, an Invoker
PUT any bytes over a data asset's uploaded file (200), nothing checked content against the hash in
the path, the CLI/SDK skipped an upload whose files were there, and a planted ``init()`` ran when a
deployment was applied again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from batchpoint import Data
from batchpoint.exceptions import ConflictError
from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job
from fixtures.inproc_cli import run_cli

ENDPOINT = "upload-ep"
STORE = "workspaceblobstore"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def ivan(server, cli_inproc, ml_client, heart_model_dir):
    """The report's principal: Invoker on one endpoint only, key made through the CLI."""
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=4)
    cli_inproc("principal", "create", "-n", "user:ivan")
    cli_inproc("role", "assignment", "create", "--role", "Invoker", "--assignee", "user:ivan",
        "--scope", f"endpoint:{ENDPOINT}")
    return record_secret(cli_inproc("principal", "key", "create", "-n", "user:ivan", "--query", "key", "-o", "tsv").out.strip())


def _http(server, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else server.auth_headers()
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def _store_root(ml_client) -> Path:
    return Path(ml_client.datastores.get(STORE).path)


def test_report_invoker_cannot_overwrite_an_uploaded_data_asset(server, cli_inproc, ml_client, ivan, tmp_path):
    data = tmp_path / "heart-upload"
    shutil.copytree(HEART_UNLABELED, data)
    (data / "marker.txt").write_text(uuid.uuid4().hex)  # content of this test's own
    cli_inproc("data", "create", "-n", "upload-heart", "--type", "uri_folder", "--path", str(data))
    path = cli_inproc("data", "show", "-n", "upload-heart", "--query", "path", "-o", "tsv").out.strip()
    rel = path.split("/paths/", 1)[1]
    target = _store_root(ml_client) / rel / "heart-unlabeled-0.csv"
    before = target.read_bytes()
    url = f"/datastores/{STORE}/files/{rel}/heart-unlabeled-0.csv"
    with _http(server, ivan) as http:
        response = http.put(url, content=b"x")
        assert response.status_code == 403, response.text
        assert "datastores/write" in response.json()["error"]["message"]
    with _http(server) as owner:  # not even the Owner writes into the area by path
        response = owner.put(url, content=b"x")
        assert response.status_code == 409, response.text
        assert "write-once" in response.json()["error"]["message"] and "POST /uploads" in response.json()["error"]["message"]
    assert target.read_bytes() == before
    # through the upload routes: the same manifest is the same, completed upload: nothing can be sent
    with _http(server, ivan) as http:
        files = [{"path": p.relative_to(data).as_posix(), "size": p.stat().st_size, "sha256": sha(p.read_bytes())}
                 for p in sorted(data.rglob("*")) if p.is_file()]
        upload = http.post("/uploads", json={"name": "heart-upload", "type": "uri_folder", "files": files}).json()
        assert upload["status"] == "Completed" and upload["path"] == path and upload["missing"] == []
        response = http.put(f"/uploads/{upload['id']}/files/heart-unlabeled-0.csv", content=before)
        assert response.status_code == 409 and "write-once" in response.text
    assert target.read_bytes() == before


def test_upload_checks_every_byte_and_never_overwrites(server, ml_client, ivan):
    a, b = f"a,{uuid.uuid4().hex}\n".encode(), b"b,2\n"
    manifest = {"name": "two", "type": "uri_folder",
                "files": [{"path": "a.csv", "size": len(a), "sha256": sha(a)},
                          {"path": "sub/b.csv", "size": len(b), "sha256": sha(b)}]}
    with _http(server, ivan) as http:
        upload = http.post("/uploads", json=manifest).json()
        uid, rel = upload["id"], upload["path"].split("/paths/", 1)[1]
        assert upload["status"] == "Pending" and upload["missing"] == ["a.csv", "sub/b.csv"]
        folder = _store_root(ml_client) / rel
        # wrong bytes (same size, then too many): refused, nothing written
        for wrong in (b"X" * len(a), a + b"more"):
            response = http.put(f"/uploads/{uid}/files/a.csv", content=wrong)
            assert response.status_code == 400 and "declared" in response.json()["error"]["message"], response.text
            assert not (folder / "a.csv").exists() and not list(folder.parent.rglob(".tmp-*"))
        assert http.put(f"/uploads/{uid}/files/a.csv", content=a).status_code == 200
        assert (folder / "a.csv").read_bytes() == a
        again = http.put(f"/uploads/{uid}/files/a.csv", content=a)
        assert again.status_code == 409 and "already there" in again.json()["error"]["message"]
        stray = http.put(f"/uploads/{uid}/files/c.csv", content=b"c")
        assert stray.status_code == 400 and "not in the manifest" in stray.json()["error"]["message"]
        traversal = http.put(f"/uploads/{uid}/files/..%2f..%2fescape.csv", content=b"c")
        assert traversal.status_code == 400
        # half sent: not trusted by invoke, by data create, by the commit
        invoke = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": upload["path"]}}}}
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke)
        assert response.status_code == 400 and "not complete" in response.json()["error"]["message"], response.text
        commit = http.post(f"/uploads/{uid}/commit")
        assert commit.status_code == 409 and "sub/b.csv" in commit.json()["error"]["message"]
        assert http.get(f"/uploads/{uid}").json()["missing"] == ["sub/b.csv"]
    with pytest.raises(Exception, match="not complete"):
        ml_client.data.create_or_update(Data(name="half-sent", path=upload["path"], type="uri_folder"))
    with _http(server, ivan) as http:
        assert http.put(f"/uploads/{uid}/files/sub/b.csv", content=b).status_code == 200
        done = http.post(f"/uploads/{uid}/commit").json()
        assert done["status"] == "Completed" and done["missing"] == []
        late = http.put(f"/uploads/{uid}/files/sub/b.csv", content=b)
        assert late.status_code == 409 and "complete" in late.json()["error"]["message"]
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke)
        assert response.status_code == 202, response.text


def test_commit_reads_back_and_drops_what_does_not_match(server, ml_client, ivan):
    """A file put into a pending upload behind the server's back is found at commit and removed."""
    good = f"id,{uuid.uuid4().hex}\n".encode()
    with _http(server, ivan) as http:
        upload = http.post("/uploads", json={"name": "planted.csv", "type": "uri_file",
                                             "files": [{"path": "planted.csv", "size": len(good), "sha256": sha(good)}]}).json()
        target = _store_root(ml_client) / upload["path"].split("/paths/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"planted")
        commit = http.post(f"/uploads/{upload['id']}/commit")
        assert commit.status_code == 409 and "did not match" in commit.json()["error"]["message"], commit.text
        assert not target.exists()
        assert http.get(f"/uploads/{upload['id']}").json()["status"] == "Pending"


def test_declarations_are_checked(server, ivan):
    with _http(server, ivan) as http:
        bad = [
            {"name": "x", "type": "mltable", "files": [{"path": "x", "size": 1, "sha256": "0" * 64}]},
            {"name": "a/b", "type": "uri_folder", "files": [{"path": "x", "size": 1, "sha256": "0" * 64}]},
            {"name": "x", "type": "uri_folder", "files": []},
            {"name": "x", "type": "uri_folder", "files": [{"path": "../x", "size": 1, "sha256": "0" * 64}]},
            {"name": "x", "type": "uri_folder", "files": [{"path": "x", "size": -1, "sha256": "0" * 64}]},
            {"name": "x", "type": "uri_folder", "files": [{"path": "x", "size": 1, "sha256": "nothex"}]},
            {"name": "x.csv", "type": "uri_file", "files": [{"path": "y.csv", "size": 1, "sha256": "0" * 64}]},
        ]
        for body in bad:
            response = http.post("/uploads", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["message"], body
        assert http.get("/uploads/" + "0" * 32).status_code == 404


def test_sdk_resumes_a_half_sent_upload_and_sends_only_what_is_missing(server, ml_client, tmp_path):
    folder = tmp_path / "resume-me"
    folder.mkdir()
    contents = {f"part-{i}.csv": f"v,{uuid.uuid4().hex}\n".encode() for i in range(3)}
    for name, body in contents.items():
        (folder / name).write_bytes(body)
    files = [{"path": n, "size": len(b), "sha256": sha(b)} for n, b in sorted(contents.items())]
    with _http(server) as http:
        upload = http.post("/uploads", json={"name": "resume-me", "type": "uri_folder", "files": files}).json()
        assert http.put(f"/uploads/{upload['id']}/files/part-0.csv", content=contents["part-0.csv"]).status_code == 200
    data = ml_client.data.create_or_update(Data(name="resumed", path=str(folder), type="uri_folder"))
    assert data.path == upload["path"]
    puts = [a for a in ml_client.audit.list(limit=200)
            if a["action"] == "PUT" and a["resource"].startswith(f"/uploads/{upload['id']}/files/")]
    assert sorted(a["resource"].rsplit("/", 1)[1] for a in puts) == ["part-0.csv", "part-1.csv", "part-2.csv"]
    assert len(puts) == 3  # part-0 once by hand, the SDK sent the other two only
    with _http(server) as http:
        assert http.get(f"/uploads/{upload['id']}").json()["status"] == "Completed"


SCORE_PY = '''
import os

def init():
    global TAG
    TAG = "original"

def run(mini_batch):
    return [f"{os.path.basename(f)},{TAG}" for f in mini_batch]
'''

PLANTED_PY = '''
import os

def init():
    global TAG
    TAG = "planted"
    open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "planted-init-ran"), "w").write("x")

def run(mini_batch):
    return [f"{os.path.basename(f)},{TAG}" for f in mini_batch]
'''


def _deployment_yaml(folder: Path) -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "score.py").write_text(SCORE_PY)
    (folder / "deployment.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json\n"
        f"name: scripted\nendpoint_name: {ENDPOINT}\nmodel: azureml:heart-classifier@latest\n"
        "code_configuration:\n  code: ./src\n  scoring_script: score.py\n"
        "settings:\n  mini_batch_size: 4\n  output_action: append_row\n")
    return folder / "deployment.yml"


def _cli(server, *args: str, key: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``batchpoint ARGS`` (as ``key``'s holder when given): the CLI run in this process (fixtures/inproc_cli.py)."""
    exe = Path(sys.executable).parent / "batchpoint"
    env = {**server.env, "BATCHPOINT_SERVER_URL": server.url}
    if key:
        env["BATCHPOINT_API_KEY"] = key
    proc = subprocess.CompletedProcess([str(exe), *args], *run_cli(env, *args))
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_cli_code_folder_cannot_be_planted(server, ml_client, ivan, tmp_path):
    """The scoring code a deployment runs is what was uploaded: an Invoker cannot replace it, and
    a file changed in storage behind Batchpoint's back is caught when the deployment is applied."""
    spec = _deployment_yaml(tmp_path / "project")
    _cli(server, "batch-deployment", "create", "-f", str(spec))
    code = ml_client.batch_deployments.get("scripted", endpoint_name=ENDPOINT).code_configuration.code
    rel = code.split("/paths/", 1)[1]
    planted_at = _store_root(ml_client) / rel / "score.py"
    with _http(server, ivan) as http:
        response = http.put(f"/datastores/{STORE}/files/{rel}/score.py", content=PLANTED_PY.encode())
        assert response.status_code == 403, response.text
    planted_at.write_text(PLANTED_PY)  # someone with direct access to the storage
    again = _cli(server, "batch-deployment", "create", "-f", str(spec), check=False)
    assert again.returncode != 0 and "changed in storage after it was uploaded" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    _cli(server, "batch-deployment", "create", "-f", str(spec))  # applied again: the CLI sends it anew
    assert planted_at.read_text() == SCORE_PY
    job = _cli(server, "batch-endpoint", "invoke", "-n", ENDPOINT, "-d", "scripted", "--input",
               str(HEART_UNLABELED), "--query", "name", "-o", "tsv", key=ivan).stdout.strip()
    done = wait_job(ml_client, job)
    assert done.status == "Completed", done.error
    out = tmp_path / "out"
    ml_client.jobs.download(job, download_path=out, output_name="score")
    lines = (out / "named-outputs" / "score" / "predictions.csv").read_text().split()
    assert len(lines) == 4 and all(line.endswith(",original") for line in lines), lines


def test_uploading_needs_an_invoke_grant_or_write_on_the_store(server, ml_client):
    ml_client.principals.create("user:upload-reader")
    ml_client.role_assignments.create("user:upload-reader", "Reader", "workspace")
    key = record_secret(ml_client.principals.create_key("user:upload-reader")["key"])
    body = {"name": "x.csv", "type": "uri_file", "files": [{"path": "x.csv", "size": 1, "sha256": sha(b"x")}]}
    with _http(server, key) as http:
        response = http.post("/uploads", json=body)
    assert response.status_code == 403 and "datastores/write" in response.json()["error"]["message"]
    with pytest.raises(ConflictError):  # and the SDK sees the write-once refusal as its own class
        ml_client._transport.upload(f"/datastores/{STORE}/files/LocalUpload/x/x.csv", iter([b"x"]))
