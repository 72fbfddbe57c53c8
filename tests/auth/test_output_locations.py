"""Where an invoke may write its output: role × location, written down by hand.

Reproduces the report "an Invoker can overwrite any file in any data store through the invoke's
output" through the REST invoke body (``OutputData`` + ``OutputFileName``): before the fix, an
Invoker of one endpoint overwrote the Owner's job output, a data asset's file under
``LocalUpload/`` and a blob of a store it could not even read.

Rules (docs/security.md, ``jobs/output.py``): the default location is every invoker's; any other
needs ``data/write`` on the store (Owner, Contributor, DataWriter); nothing may overlap the upload
area, the jobs' area, a registered data asset, or another job's output (409).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from batchpoint import Data, Datastore
from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job

ENDPOINT = "outloc-ep"
DEFAULT = "workspaceblobstore"
RESULTS = "outlocresults"  # the DataWriter's store
OTHER = "outlocother"  # nobody but Owner/Contributor may write here; holds in/ (an input folder)

# Which role may write where. "202" accepted, "403" missing data/write, "409" overlaps data.
# Columns: Invoker (endpoint only), Writer (Invoker on the endpoint + DataWriter on RESULTS),
# Contributor (workspace), Owner (workspace).
ROLES = ["Invoker", "Writer", "Contributor", "Owner"]
MATRIX = {
    #  location            Invoker  Writer  Contributor  Owner
    "default":            ("202",   "202",  "202",       "202"),
    "free-default":       ("403",   "403",  "202",       "202"),
    "free-results":       ("403",   "202",  "202",       "202"),
    "free-other":         ("403",   "403",  "202",       "202"),
    "jobs-area":          ("403",   "403",  "409",       "409"),
    "upload-area":        ("403",   "403",  "409",       "409"),
    "store-root":         ("403",   "403",  "409",       "409"),
    "input-folder":       ("403",   "403",  "409",       "409"),  # registered data asset on OTHER:in
    "holds-asset":        ("403",   "403",  "409",       "409"),
    "inside-asset":       ("403",   "403",  "409",       "409"),
    "other-job":          ("403",   "409",  "409",       "409"),
}


@pytest.fixture(scope="module")
def world(server, ml_client, heart_model_dir, tmp_path_factory):
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=4)
    local = {}
    for name in (RESULTS, OTHER):
        folder = tmp_path_factory.mktemp(name)
        ml_client.datastores.create_or_update(Datastore(name=name, type="local", path=str(folder)))
        local[name] = folder
    (local[OTHER] / "in" / "data").mkdir(parents=True)
    (local[OTHER] / "in" / "data" / "f0001.csv").write_text((HEART_UNLABELED / "heart-unlabeled-0.csv").read_text())
    ml_client.data.create_or_update(Data(name="outloc-in", type="uri_folder",
                                         path=f"azureml://datastores/{OTHER}/paths/in/data"))
    uploaded = ml_client.data.create_or_update(Data(name="outloc-upl", path=str(HEART_UNLABELED), type="uri_folder"))
    owner_job = wait_job(ml_client, ml_client.batch_endpoints.invoke(
        endpoint_name=ENDPOINT, input=_input(uploaded)).name)
    assert owner_job.status == "Completed", owner_job.error
    taken = f"taken/{uuid.uuid4().hex[:8]}"
    custom_job = wait_job(ml_client, ml_client.batch_endpoints.invoke(
        endpoint_name=ENDPOINT, input=_input(uploaded), output_path=f"azureml://datastores/{RESULTS}/paths/{taken}").name)
    assert custom_job.status == "Completed", custom_job.error
    keys = {"Owner": server.home.joinpath("owner.key").read_text().strip()}
    for role, grants in {"Invoker": [("Invoker", f"endpoint:{ENDPOINT}")],
                         "Writer": [("Invoker", f"endpoint:{ENDPOINT}"), ("DataWriter", f"datastore:{RESULTS}")],
                         "Contributor": [("Contributor", "workspace")]}.items():
        pid = f"user:outloc-{role.lower()}"
        ml_client.principals.create(pid)
        for grant, scope in grants:
            ml_client.role_assignments.create(pid, grant, scope)
        keys[role] = record_secret(ml_client.principals.create_key(pid)["key"])
    upload_path = uploaded.path.split("/paths/", 1)[1]
    locations = {
        "default": None,
        "free-default": f"{DEFAULT}/paths/free",
        "free-results": f"{RESULTS}/paths/free",
        "free-other": f"{OTHER}/paths/free",
        "jobs-area": f"{DEFAULT}/paths/azureml/{owner_job.name}/score",
        "upload-area": f"{DEFAULT}/paths/{upload_path}",
        "store-root": f"{OTHER}/paths/",
        "input-folder": f"{OTHER}/paths/in/data",
        "holds-asset": f"{OTHER}/paths/in",
        "inside-asset": f"{OTHER}/paths/in/data/sub",
        "other-job": f"{RESULTS}/paths/{taken}",
    }
    store_root = Path(ml_client.datastores.get(DEFAULT).path)
    protected = {  # files a refused invoke must leave byte for byte as they were
        "owner-output": store_root / "azureml" / owner_job.name / "score" / "predictions.csv",
        "uploaded-file": store_root / upload_path / "heart-unlabeled-0.csv",
        "input-file": local[OTHER] / "in" / "data" / "f0001.csv",
        "other-job-output": local[RESULTS] / taken / "predictions.csv",
    }
    digests = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in protected.items()}
    return {"keys": keys, "locations": locations, "data": uploaded, "protected": protected, "digests": digests,
            "local": local, "store_root": store_root}


def _input(data):
    from batchpoint import Input

    return Input(type="uri_folder", path=data.id)


def _body(world, location: str, file_name: str) -> dict:
    props = {"InputData": {"heart": {"JobInputType": "UriFolder", "Uri": world["data"].id}}}
    where = world["locations"][location]
    if where is not None:
        unique = f"/{uuid.uuid4().hex[:8]}" if location.startswith("free-") else ""
        props["OutputData"] = {"score": {"JobOutputType": "UriFolder", "Uri": f"azureml://datastores/{where}{unique}"}}
        props["OutputFileName"] = file_name
    return {"properties": props}


CASES = [(loc, role, MATRIX[loc][i]) for loc in MATRIX for i, role in enumerate(ROLES)]


@pytest.mark.parametrize(("location", "role", "expected"), CASES, ids=[f"{loc}-{role}" for loc, role, _ in CASES])
def test_invoke_output_location(server, world, location, role, expected):
    # the protected files' own names: a refused invoke would have overwritten them
    file_name = {"jobs-area": "predictions.csv", "upload-area": "heart-unlabeled-0.csv",
                 "input-folder": "f0001.csv", "other-job": "predictions.csv"}.get(location, "predictions.csv")
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {world['keys'][role]}"}) as http:
        before = {j["name"] for j in http.get("/jobs", params={"limit": 1000}).json()}
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_body(world, location, file_name))
        after = {j["name"] for j in http.get("/jobs", params={"limit": 1000}).json()}
    assert str(response.status_code) == expected, response.text
    if expected == "403":
        error = response.json()["error"]
        assert error["code"] == "permission_denied" and "data/write" in error["message"], error
        assert "batchpoint role assignment create --role" in error["message"]
    elif expected == "409":
        error = response.json()["error"]
        assert error["code"] == "conflict", error
        assert any(w in error["message"] for w in ("overlaps", "inside", "root of data store")), error
    if expected != "202":
        assert after == before, "a refused invoke left a job behind"
    for key, path in world["protected"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == world["digests"][key], f"{key} was changed"


def test_accepted_outputs_land_where_asked(server, ml_client, world):
    """The DataWriter's job completes and its predictions are in its own store, nowhere else."""
    folder = f"mine/{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {world['keys']['Writer']}"}) as http:
        body = _body(world, "default", "predictions.csv")
        body["properties"]["OutputData"] = {"score": {"Uri": f"azureml://datastores/{RESULTS}/paths/{folder}"}}
        body["properties"]["OutputFileName"] = "scores.csv"
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
        assert response.status_code == 202, response.text
        job = wait_job(ml_client, response.json()["name"])
        assert job.status == "Completed", job.error
        assert (world["local"][RESULTS] / folder / "scores.csv").read_text().count("\n") == 303
        # the same folder again is another job's output now
        again = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
        assert again.status_code == 409 and job.name in again.json()["error"]["message"], again.text


@pytest.mark.parametrize("file_name", ["../x.csv", "a/b.csv", ".."])
def test_output_file_name_must_be_a_plain_name(server, world, file_name):
    with httpx.Client(base_url=server.url, timeout=60, headers=server.auth_headers()) as http:
        body = _body(world, "free-default", "x")
        body["properties"]["OutputFileName"] = file_name
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
