"""Issue 24 §4 on Ray: a deployment's Ray actors kept warm across its jobs (``engines/ray_warm.py``).

One fenced real server (bubblewrap, as in production) on the test command's Ray cluster, shared by
the module; one actor per job (instance_count 1, max_concurrency_per_instance 1) and two tiny
files per job. The scoring script's ``init()`` draws a token and prints it; ``run()`` returns it
in its rows. So "init() ran once" is the worker log's ``init took`` line in the first job only, and
"the same actor" is the same token in both jobs' predictions:

* the second job of a deployment is served by the first job's parked actor (no ``init took``,
  ``ready: warm``, the same token; each job's log has its own files only); ``/metrics`` shows it;
* a new model version, a code change and other environment variables each start a fresh actor
  (the deployment's update stops its parked one at once), and the changed deployment's next job
  is served warm again;
* a parked actor killed (SIGKILL of its process) is dropped (``/metrics``), a cold one serves the
  next job and it completes;
* another deployment of the same model and code never gets them;
* a warm actor writes the next job's parts to that job's remote output store (Azurite) itself;
* unfenced actors (the scorer in the actor's process) are kept too, and ``warm_idle_s`` frees them;
* a hostile script in the warm actor's next job finds nothing of the job before (its inputs, the
  files it left in its working folder, ``/tmp`` and ``AZUREML_BI_OUTPUT_PATH``) nor of the server
  (the probe of ``tests/engines/test_worker_isolation.py``), and cannot write through its inputs.

Each fails on the code before warm actors: there every job's actor ran ``init()``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from conftest import start_server, stop_server, wait_job
from engines.ray_cluster.conftest import alive_actors, blobs_under, register_out_store
from engines.test_worker_isolation import CANARY, HOSTILE_PY
from fixtures.flows import wait_until, write_script

pytestmark = pytest.mark.timeout(300)

ENDPOINT = "ray-warm"

WARM_PY = '''
import os
import uuid

import pandas

TOKEN = None


def init():
    global TOKEN
    TOKEN = uuid.uuid4().hex[:12]
    print("init ran: " + TOKEN, flush=True)


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    print("run in " + TOKEN + ": " + ",".join(names), flush=True)
    return pandas.DataFrame({"file": names, "token": [TOKEN] * len(names)})
'''


class Warm:
    """The module's fenced server, its client and Ray compute."""

    def __init__(self, server: Any, client: MLClient, tmp: Path) -> None:
        self.server, self.client, self.tmp = server, client, tmp
        self.home = server.home
        self.count = 0

    def model(self, name: str, content: str) -> str:
        folder = self.tmp / f"model-{name}-{content}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.txt").write_text(content)
        return self.client.models.create_or_update(Model(name=name, type="custom_model", path=str(folder))).version

    def deploy(self, name: str, script: str = WARM_PY, model: str = "azureml:warm-model:1",
               env: dict[str, str] | None = None) -> None:
        self.count += 1
        code = write_script(self.tmp / f"code-{name}-{self.count}", script)
        self.client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=ENDPOINT, model=model, compute="azureml:ray-warm",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            environment_variables=env or {}, instance_count=1, max_concurrency_per_instance=1, mini_batch_size=2,
            error_threshold=0, retry_settings={"max_retries": 0, "timeout": 120})).result()

    def data(self, prefix: str, n: int = 2) -> Path:
        folder = self.tmp / f"in-{prefix}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"{prefix}-{i}.csv").write_text("age\n50\n")
        return folder

    def job(self, deployment: str, folder: Path, env: dict[str, str] | None = None,
            output_path: str | None = None) -> dict[str, Any]:
        """Invoke, wait for Completed; the job's name, its worker logs and rows (file -> [columns])."""
        job = self.client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name=deployment,
                                                 input=Input(type="uri_folder", path=str(folder)),
                                                 environment_variables=env or {}, output_path=output_path)
        done = wait_job(self.client, job.name, timeout=240)
        assert done.status == "Completed", (done.status_message, done.error)
        saved = self.client.jobs.download(job.name, download_path=self.tmp / "out" / job.name, output_name="score")
        [predictions] = [Path(p) for p in saved if Path(p).name == "predictions.csv"]
        rows = {line.split(" ")[0]: line.split(" ")[1:] for line in predictions.read_text().splitlines()}
        logs = "".join(p.read_text() for p in sorted((self.home / "jobs" / job.name / "logs").glob("worker-*.log")))
        return {"name": job.name, "rows": rows, "log": logs, "tokens": {r[-1] for r in rows.values()}}

    def metrics(self) -> str:
        return httpx.get(f"{self.server.url}/metrics", timeout=10).text


@contextmanager
def warm_server(tmp: Path, ray_address: str, ray_token: str, env: dict[str, str]) -> Iterator[Warm]:
    """A server (``env`` added to public /metrics), its Ray compute of one 0.5-CPU actor, the
    endpoint and model version 1: the :class:`Warm` helper over them; the server stopped after."""
    server = start_server(tmp / "home", {"BATCHPOINT_SERVER__METRICS_PUBLIC": "true", **env})
    client = MLClient(endpoint=server.url, home=server.home)
    try:
        client.compute.begin_create_or_update(AmlCompute(
            name="ray-warm", type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
            max_instances=1)).result()
        client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
        w = Warm(server, client, tmp)
        w.model("warm-model", "1")
        yield w
    finally:
        client.close()
        stop_server(server)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, ray_address: str, ray_token: str) -> Iterator[Warm]:
    with warm_server(tmp_path_factory.mktemp("ray-warm"), ray_address, ray_token, {
            "BATCHPOINT_WORKERS__ISOLATION": "bwrap", "BATCHPOINT_PROBE_CANARY": CANARY,
            "BATCHPOINT_WORKERS__WARM_IDLE_S": "240"}) as w:
        yield w


def _cold(job: dict[str, Any]) -> bool:
    return "init took" in job["log"] and "ready: warm" not in job["log"]


def _warm(job: dict[str, Any]) -> bool:
    return "init took" not in job["log"] and "init ran" not in job["log"] and "ready: warm" in job["log"]


def test_the_second_job_of_a_deployment_is_served_by_its_parked_actor(warm: Warm) -> None:
    warm.deploy("reuse")
    one = warm.job("reuse", warm.data("reuse-one"))
    assert _cold(one) and len(one["tokens"]) == 1, one["log"]
    shown = warm.metrics()
    assert f'batchpoint_ray_warm_actors{{deployment="{ENDPOINT}/reuse"}} 1.0' in shown, shown
    assert f'batchpoint_ray_warm_actor_cpus{{deployment="{ENDPOINT}/reuse"}} 0.5' in shown, shown
    two = warm.job("reuse", warm.data("reuse-two"))
    assert two["tokens"] == one["tokens"], "the second job was not served by the first job's actor"
    assert _warm(two), two["log"]
    # each job's log has its own job's lines only
    assert "reuse-one-0.csv" in one["log"] and "reuse-two" not in one["log"]
    assert "reuse-two-0.csv" in two["log"] and "reuse-one" not in two["log"]


def test_a_new_model_version_code_or_environment_starts_a_fresh_actor(warm: Warm) -> None:
    warm.deploy("changes")
    data = warm.data("changes")
    seen = warm.job("changes", data)["tokens"]
    assert len(seen) == 1
    version = warm.model("warm-model", "2")
    changes = {
        "model version": dict(model=f"azureml:warm-model:{version}"),
        "code": dict(model=f"azureml:warm-model:{version}", script=WARM_PY + "\n# v2\n"),
        "environment variables": dict(model=f"azureml:warm-model:{version}", script=WARM_PY + "\n# v2\n",
                                      env={"MY_SETTING": "2"}),
    }
    for what, change in changes.items():
        warm.deploy("changes", **change)  # the update stops the deployment's parked actor at once
        assert f'deployment="{ENDPOINT}/changes"' not in warm.metrics(), what
        job = warm.job("changes", data)
        assert _cold(job), f"a parked actor served a job with another {what}: {job['log'][-2000:]}"
        assert not job["tokens"] & seen, what
        seen |= job["tokens"]
    again = warm.job("changes", data)  # the changed deployment's own actor serves it warm
    assert _warm(again) and again["tokens"] == job["tokens"], again["log"]


def test_a_killed_parked_actor_is_replaced_and_the_job_completes(warm: Warm, ray_driver: str) -> None:
    warm.deploy("killed")
    data = warm.data("killed")
    before = {a["actor_id"] for a in alive_actors()}
    one = warm.job("killed", data)
    parked = [a for a in alive_actors(("ALIVE",)) if a["actor_id"] not in before]
    assert len(parked) == 1, f"the job's actor was not kept: {parked}"
    os.kill(int(parked[0]["pid"]), signal.SIGKILL)
    wait_until(lambda: parked[0]["actor_id"] not in {a["actor_id"] for a in alive_actors()}, 30,
               "Ray sees the parked actor dead")
    wait_until(lambda: f'deployment="{ENDPOINT}/killed"' not in warm.metrics(), 15,
               "the server drops the dead parked actor (no longer shown in /metrics)")
    two = warm.job("killed", data)
    assert _cold(two), two["log"]
    assert not two["tokens"] & one["tokens"]


def test_another_deployment_never_gets_a_parked_actor(warm: Warm) -> None:
    warm.deploy("mine")
    warm.deploy("other")  # the same model and code, another deployment
    data = warm.data("other")
    mine = warm.job("mine", data)
    other = warm.job("other", data)
    assert _cold(other) and not other["tokens"] & mine["tokens"], other["log"]
    again = warm.job("mine", data)
    assert _warm(again) and again["tokens"] == mine["tokens"], again["log"]
    shown = warm.metrics()
    for name in ("mine", "other"):
        assert f'batchpoint_ray_warm_actors{{deployment="{ENDPOINT}/{name}"}} 1.0' in shown, shown


def test_a_warm_actor_writes_the_next_jobs_parts_to_its_remote_output_store(
        warm: Warm, azurite_blob_url: str, out_container: Any) -> None:
    """The output store's delegated credential and staging prefix are the job's own: the warm
    actor writes the second job's parts there itself (none through the server)."""
    store = register_out_store(warm.client, azurite_blob_url, "raywarm")
    warm.deploy("remote")
    data = warm.data("remote")
    one = warm.job("remote", data, output_path=f"azureml://datastores/{store}/paths/warm-one")
    two = warm.job("remote", data, output_path=f"azureml://datastores/{store}/paths/warm-two")
    assert _warm(two) and two["tokens"] == one["tokens"], two["log"]
    assert sorted(two["rows"]) == ["remote-0.csv", "remote-1.csv"]
    for job in (one, two):
        assert list((warm.home / "jobs" / job["name"]).glob("parts/*.csv")) == []  # written by the actor
        assert blobs_under(out_container, f"azureml/{job['name']}/parts/") == []  # staging gone once Completed
    assert len(blobs_under(out_container, "warm-two/")) == 1
    assert "written to" in two["log"]  # the actor's upload of the part, in the second job's log


PROBE = HOSTILE_PY.split("\ndef init():")[0]
HOSTILE_WARM_PY = PROBE + r'''

TOKEN = None


def _leftovers(names):
    """What the actor's folders (the parent of the working folder's parent) and /tmp show of a job before."""
    seen = []
    actor_home = os.path.dirname(os.path.dirname(os.getcwd()))
    for top in (actor_home, "/tmp", os.environ.get("TMPDIR", "/tmp"), os.environ["AZUREML_BI_OUTPUT_PATH"]):
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                if name.startswith(("left-", "probe-one")) and not any(n in name for n in names):
                    seen.append(f"left:{os.path.join(root, name)}")
    return seen


def init():
    global found_at_init, TOKEN
    import uuid
    TOKEN = uuid.uuid4().hex[:12]
    found_at_init = probe()


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    found_now = set(found_at_init) | set(probe()) | set(_leftovers(names))
    for path in mini_batch:  # a hard link of the store's file: it must not be written through
        try:
            with open(path, "a") as f:
                f.write("tampered")
            found_now.add("wrote-input:" + os.path.basename(path))
        except OSError:
            pass
    for folder in (os.getcwd(), os.environ.get("TMPDIR", "/tmp"), os.environ["AZUREML_BI_OUTPUT_PATH"]):
        with open(os.path.join(folder, "left-" + names[0]), "w") as f:
            f.write("x")
    text = "|".join(sorted(found_now)).replace(" ", "_") or "nothing"
    return pandas.DataFrame({"file": names, "found": [text] * len(names), "token": [TOKEN] * len(names)})
'''


def test_a_hostile_script_in_a_warm_actors_next_job_finds_nothing_of_the_job_before(warm: Warm) -> None:
    warm.deploy("hostile", script=HOSTILE_WARM_PY)
    env = {"PROBE_HOME": str(warm.home), "OTHER_JOB": "none", "SERVER_PID": str(warm.server.proc.pid)}
    one_data, two_data = warm.data("probe-one"), warm.data("probe-two")
    one = warm.job("hostile", one_data, env)
    two = warm.job("hostile", two_data, env)
    assert two["tokens"] == one["tokens"] and _warm(two), "the second job was not served warm: nothing tested"
    for job in (one, two):
        assert {r[0] for r in job["rows"].values()} == {"nothing"}, job["rows"]
    assert all((one_data / f"probe-one-{i}.csv").read_text() == "age\n50\n" for i in range(2))
    # what job one's script wrote to AZUREML_BI_OUTPUT_PATH went to job one's output, not two's
    bi_one = [p.name for p in (warm.tmp / "out" / one["name"]).rglob("left-*")]
    bi_two = [p.name for p in (warm.tmp / "out" / two["name"]).rglob("left-*")]
    assert bi_one == ["left-probe-one-0.csv"] and bi_two == ["left-probe-two-0.csv"], (bi_one, bi_two)


def test_unfenced_actors_are_kept_too_and_the_idle_timeout_frees_them(tmp_path: Path, ray_address: str,
                                                                      ray_token: str, ray_driver: str) -> None:
    """``workers.isolation: none`` (the scorer in the actor's own process) and a short
    ``warm_idle_s``: the second job is served warm, then the parked actor is killed when idle."""
    with warm_server(tmp_path, ray_address, ray_token, {"BATCHPOINT_WORKERS__ISOLATION": "none",
                                                         "BATCHPOINT_WORKERS__WARM_IDLE_S": "8"}) as w:
        w.deploy("idle")
        data = w.data("idle")
        before = {a["actor_id"] for a in alive_actors()}
        one = w.job("idle", data)
        two = w.job("idle", data)
        assert "ready on Ray (init took" in one["log"], one["log"]
        assert two["tokens"] == one["tokens"] and "init took" not in two["log"] and "ready on Ray: warm" in two["log"]
        [actor] = [a["actor_id"] for a in alive_actors(("ALIVE",)) if a["actor_id"] not in before]
        wait_until(lambda: actor not in {a["actor_id"] for a in alive_actors()}, 30,
                   "the parked actor killed after workers.warm_idle_s")
        assert f'deployment="{ENDPOINT}/idle"' not in w.metrics()
