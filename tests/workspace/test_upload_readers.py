"""Issue 18 §4: an Invoker scoped to one endpoint cannot score other principals' uploads or the
jobs' area (``workspace/uploads.py`` ``check_reader``, called by ``jobs/submit.py`` before the input
is read).

Before the fix an invoke on ``azureml://datastores/workspaceblobstore/paths/LocalUpload`` (and
``…/paths/azureml``) was accepted: the job scored another Invoker's private uploads and its failure
list named every upload, including the Owner's model. Now the upload area (its root, or another
principal's upload) and the jobs' area ``azureml/`` need ``data/read`` on the store; an upload stays
readable by whoever declared it (that is how a local-folder invoke works) and by data/read holders.
"""

from __future__ import annotations

import hashlib

import pytest

from fixtures.inproc import invoke_body, workspace

ENDPOINT = "uploads-ep"
STORE = "azureml://datastores/workspaceblobstore/paths"


def upload(client, name: str, files: dict[str, bytes]) -> dict:
    manifest = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()]
    declared = client.post("/uploads", json={"name": name, "type": "uri_folder", "files": manifest})
    assert declared.status_code == 200, declared.text
    body = declared.json()
    for path in body["missing"]:
        assert client.put(f"/uploads/{body['id']}/files/{path}", content=files[path]).status_code == 200
    committed = client.post(f"/uploads/{body['id']}/commit")
    assert committed.status_code == 200, committed.text
    return committed.json()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with workspace(tmp_path_factory.mktemp("uploads")) as inproc:
        inproc.deploy(ENDPOINT)
        inproc.ivan = inproc.as_role("ivan", "Invoker", f"endpoint:{ENDPOINT}")
        inproc.olga = inproc.as_role("olga", "Invoker", f"endpoint:{ENDPOINT}")
        inproc.dora = inproc.as_role("dora", "Invoker", f"endpoint:{ENDPOINT}")
        response = inproc.owner.post("/roleAssignments", json={"principal_id": "user:dora", "role": "DataReader",
                                                               "scope": "datastore:workspaceblobstore"})
        assert response.status_code == 201
        inproc.owners = upload(inproc.owner, "owner-private", {"model.pkl": b"secret model\n"})
        inproc.olgas = upload(inproc.olga, "olga-private", {"rows.csv": b"x\n42\n"})
        inproc.ivans = upload(inproc.ivan, "ivan-data", {"a.csv": b"x\n1\n"})
        job = inproc.owner.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(inproc.ivans["path"]))
        assert job.status_code == 202, job.text
        inproc.owner_job = job.json()["name"]
        yield inproc


def _invoke(client, uri: str):
    return client.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body(uri))


def refused(ws, who, uri: str, what: str) -> None:
    before = len(ws.owner.get("/jobs").json())
    response = _invoke(who, uri)
    assert response.status_code == 403, response.text
    message = response.json()["error"]["message"]
    assert "'data/read'" in message and what in message, message
    assert "datastore:workspaceblobstore" in message
    assert len(ws.owner.get("/jobs").json()) == before


@pytest.mark.parametrize(("uri", "what"), [
    ("{store}/LocalUpload", "the upload area LocalUpload/"),
    ("{store}/LocalUpload/", "the upload area LocalUpload/"),
    ("{store}//LocalUpload/./", "the upload area LocalUpload/"),
    ("{store}/azureml", "the jobs' area azureml/"),
    ("{store}/azureml/{job}/score", "the jobs' area azureml/"),
    ("{owner}", "another principal's upload"),
    ("{owner_folder}", "another principal's upload"),
    ("{olga}", "another principal's upload"),
    ("{store}/LocalUpload/0123456789abcdef0123456789abcdef/x", "another principal's upload"),  # none: no oracle
])
def test_report_invoker_cannot_score_others_uploads_or_the_jobs_area(ws, uri, what):
    uri = uri.format(store=STORE, job=ws.owner_job, owner=ws.owners["path"], olga=ws.olgas["path"],
                     owner_folder=ws.owners["path"].rsplit("/", 1)[0])
    refused(ws, ws.ivan, uri, what)


def test_own_upload_stays_readable(ws):
    assert _invoke(ws.ivan, ws.ivans["path"]).status_code == 202


def test_the_same_content_declared_by_another_is_theirs_too(ws):
    """The area is content-addressed: declaring Olga's exact manifest proves holding its content."""
    again = upload(ws.ivan, "olga-private", {"rows.csv": b"x\n42\n"})
    assert again["id"] == ws.olgas["id"]
    assert _invoke(ws.ivan, ws.olgas["path"]).status_code == 202
    refused(ws, ws.ivan, ws.owners["path"], "another principal's upload")  # still not the Owner's


def test_data_read_on_the_store_reads_the_areas(ws):
    for uri in (ws.owners["path"], f"{STORE}/azureml/{ws.owner_job}", f"{STORE}/LocalUpload"):
        response = _invoke(ws.dora, uri)
        assert response.status_code != 403, response.text  # past the check (what is there may still be refused)
    assert _invoke(ws.dora, ws.owners["path"]).status_code == 202
    assert _invoke(ws.owner, ws.olgas["path"]).status_code == 202  # Owner: data/read on every store


def test_a_registered_data_asset_on_an_upload_is_shared(ws):
    response = ws.owner.post("/data/owner-shared/versions", json={"version": "1", "path": ws.owners["path"]})
    assert response.status_code == 201, response.text
    assert _invoke(ws.ivan, "azureml:owner-shared:1").status_code == 202


@pytest.mark.parametrize("kind", ["data", "models"])
def test_registering_another_principals_upload_is_refused(ws, kind):
    """A Contributor (assets/write, models/write, no data/read) cannot share another's upload by
    registering it; its own upload it can."""
    cora = getattr(ws, "cora", None) or ws.as_role("cora", "Contributor")
    ws.cora = cora
    for uri, what in ((ws.olgas["path"], "another principal's upload"), (f"{STORE}/LocalUpload", "the upload area"),
                      (f"{STORE}/azureml/{ws.owner_job}", "the jobs' area")):
        response = cora.post(f"/{kind}/cora-{kind}-sneak/versions", json={"version": "1", "path": uri})
        assert response.status_code == 403, response.text
        assert "'data/read'" in response.text and what in response.text
    assert ws.owner.get(f"/{kind}/cora-{kind}-sneak").status_code == 404
    own = upload(cora, f"cora-{kind}", {"m.csv": f"x\n{kind}\n".encode()})
    assert cora.post(f"/{kind}/cora-{kind}-own/versions", json={"version": "1", "path": own["path"]}).status_code == 201


def test_a_deployments_code_from_another_principals_upload_is_refused(ws):
    """As for registering: a deployment's code folder (or inline model) in another's upload or the
    jobs' area needs data/read; one's own upload is fine, and an update that keeps the code path
    is not checked again."""
    cora = getattr(ws, "cora", None) or ws.as_role("cora", "Contributor")
    ws.cora = cora
    code = {"score.py": b"import os\n\ndef init():\n    pass\n\ndef run(b):\n    return [os.path.basename(p) for p in b]\n"}
    olgas_code = upload(ws.olga, "olga-code", code)
    body = {"model": f"azureml:{ENDPOINT}-model:1", "env_manager": "local",
            "code_configuration": {"code": olgas_code["path"], "scoring_script": "score.py"}}
    response = cora.put(f"/batchEndpoints/{ENDPOINT}/deployments/cora-sneak", json=body)
    assert response.status_code == 403 and "'data/read'" in response.text, response.text
    inline = {"model": {"path": ws.owners["path"]}, "env_manager": "local",
              "code_configuration": {"code": f"{STORE}/setup/{ENDPOINT}/code", "scoring_script": "score.py"}}
    response = cora.put(f"/batchEndpoints/{ENDPOINT}/deployments/cora-inline", json=inline)
    assert response.status_code == 403 and "'data/read'" in response.text, response.text
    own = upload(cora, "cora-code", code)
    body["code_configuration"]["code"] = own["path"]
    assert cora.put(f"/batchEndpoints/{ENDPOINT}/deployments/cora-own", json=body).status_code == 200
    # the Owner's deployment on the Owner's upload: a Contributor may still change its settings
    owner_code = upload(ws.owner, "owner-code", code)
    body["code_configuration"]["code"] = owner_code["path"]
    assert ws.owner.put(f"/batchEndpoints/{ENDPOINT}/deployments/owner-dep", json=body).status_code == 200
    response = cora.patch(f"/batchEndpoints/{ENDPOINT}/deployments/owner-dep", json={"settings": {"mini_batch_size": 3}})
    assert response.status_code == 200, response.text
