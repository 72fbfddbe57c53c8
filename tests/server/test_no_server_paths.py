"""What a job shows of the server (issue: what a new user hits, item 11).

Reproduces: failure records carried tracebacks through Batchpoint's own frames with server paths
(``…/src/batchpoint/engines/worker.py", line 140``), and ``inputs.location`` showed server folders
to Readers and Invokers. Users see their code's frames by file name, or a one-line cause; the
server's folders are for Owners only.
"""

from __future__ import annotations

import httpx
import pytest

from batchpoint import BatchDeployment, CodeConfiguration, Data
from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job
from fixtures.flows import write_script

ENDPOINT = "nopaths-ep"
FAILING = '''
def init():
    pass

def helper(path):
    raise ValueError(f"cannot score {path.rsplit('/', 1)[-1]}")

def run(mini_batch):
    return [helper(f) for f in mini_batch]
'''


@pytest.fixture(scope="module")
def jobs(server, ml_client, heart_model_dir, tmp_path_factory):
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=4)
    code = write_script(tmp_path_factory.mktemp("failing"), FAILING)
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="failing", endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        settings={"mini_batch_size": 4, "retry_settings": {"max_retries": 0, "timeout": 60}})).result()
    mixed = tmp_path_factory.mktemp("mixed") / "data"
    mixed.mkdir()
    (mixed / "a.csv").write_text((HEART_UNLABELED / "heart-unlabeled-0.csv").read_text())
    (mixed / "notes.txt").write_text("not a table\n")
    data = ml_client.data.create_or_update(Data(name="nopaths", path=str(mixed), type="uri_folder"))
    ml_client.principals.create("user:nopaths-invoker")
    ml_client.role_assignments.create("user:nopaths-invoker", "Invoker", f"endpoint:{ENDPOINT}")
    key = record_secret(ml_client.principals.create_key("user:nopaths-invoker")["key"])
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    names = {}
    for case, deployment in (("user", "failing"), ("input", "mlflow")):
        body = {"properties": {"InputData": {"x": {"JobInputType": "UriFolder", "Uri": data.id}},
                               "DeploymentName": deployment, "Settings": {"error_threshold": -1}}}
        response = http.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
        assert response.status_code == 202, response.text
        names[case] = response.json()["name"]
        wait_job(ml_client, names[case])
    yield http, names
    http.close()


def _failures(http, name):
    response = http.get(f"/jobs/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def test_user_code_failures_show_only_the_users_frames(jobs):
    http, names = jobs
    job = _failures(http, names["user"])
    failure = job["failures"][0]
    assert "ValueError: cannot score" in failure["error"] and failure["kind"] == "user"
    assert 'File "score.py"' in failure["error"] and "in helper" in failure["error"], failure["error"]
    for leak in ("/src/batchpoint", "batchpoint/worker", "site-packages", str(http.base_url), "/code/"):
        assert leak not in failure["error"], (leak, failure["error"])


def test_input_failures_are_one_line_without_frames(jobs):
    http, names = jobs
    job = _failures(http, names["input"])
    [failure] = [f for f in job["failures"] if f["file"].endswith("notes.txt")]
    assert failure["kind"] == "input" and "FileReadError" in failure["error"]
    assert 'File "' not in failure["error"] and "/src/batchpoint" not in failure["error"], failure["error"]


def test_server_folders_are_for_owners_only(server, jobs):
    http, names = jobs
    seen = _failures(http, names["input"])["inputs"]["x"]
    assert seen["location"] == "local data store 'workspaceblobstore'", seen
    assert str(server.home) not in str(_failures(http, names["input"]))
    listed = http.get(f"/batchEndpoints/{ENDPOINT}/jobs").json()
    assert listed and str(server.home) not in str(listed)
    with server.rest() as owner:
        shown = owner.get(f"/jobs/{names['input']}").json()["inputs"]["x"]
    assert shown["location"].startswith("local(path=") and str(server.home) in shown["location"]


def test_environment_builds_show_server_paths_to_owners_only(server, ml_client):
    """``/environment-builds`` and ``environment show`` say what was built; where it is on the server's
    disk (its folder, the interpreter) only to Owners, as for every other server path."""
    import json

    build = server.home / "environments" / "f00dfeedf00dfeedf00d"
    build.mkdir(parents=True, exist_ok=True)
    (build / "batchpoint-env.json").write_text(json.dumps({
        "source": "a test's record", "python": "/usr/bin/python3.11", "requirements": ["pandas==2.2.0"]}))
    ml_client.principals.create("user:nopaths-reader")
    ml_client.role_assignments.create("user:nopaths-reader", "Reader", "workspace")
    key = record_secret(ml_client.principals.create_key("user:nopaths-reader")["key"])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as reader:
        listed = reader.get("/environment-builds")
    assert listed.status_code == 200, listed.text
    [mine] = [b for b in listed.json() if b["hash"] == build.name]
    assert mine["requirements"] == ["pandas==2.2.0"] and "path" not in mine and "python" not in mine, mine
    assert str(server.home) not in listed.text
    with server.rest() as owner:
        [seen] = [b for b in owner.get("/environment-builds").json() if b["hash"] == build.name]
    assert seen["path"] == str(build) and seen["python"] == "/usr/bin/python3.11"
