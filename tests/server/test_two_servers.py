"""Two real servers (uvicorn, as ``tests/conftest.py`` starts them) on one PostgreSQL database and
one shared home (the jobs folder, models and code copies, the server key): both answer the same
API, 50 queued jobs are each run exactly once between them (counted in a file the scoring script
appends to, and in the job records), and a server SIGKILLed in the middle of a job has it picked up
by the other (its heartbeat goes stale: ``Crashed``, then resumed from its finished mini-batches)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ServerHandle, start_server, stop_server
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, MLClient, Model
from store.test_claims import fresh_database

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

JOBS, ENDPOINT = 50, "two-servers"
SCORE = '''
import os
import time


def init():
    pass


def run(mini_batch):
    for path in mini_batch:
        with open(os.environ["SCORED_FILE"], "a") as out:
            out.write(os.path.basename(path) + "\\n")
        time.sleep(float(os.environ["SLEEP_S"]))
    return [os.path.basename(path) for path in mini_batch]
'''


def start_second(home: Path, env: dict[str, str]) -> ServerHandle:
    (home / "server.json").unlink(missing_ok=True)  # the first server's; wait for the second's own
    return start_server(home, env)


def deploy(client: MLClient, tmp: Path, scored: Path, data: Path) -> None:
    """Deployment ``append`` (the default; 0.05 s per file) and ``slow`` (1 s per file)."""
    model, code = tmp / "model", tmp / "code"
    for folder in (model, code):
        folder.mkdir(parents=True, exist_ok=True)
    (model / "weights.txt").write_text("none\n")
    (code / "score.py").write_text(SCORE)
    client.datastores.create_or_update(Datastore(name="shareddata", type="local", path=str(data)))
    client.models.create_or_update(Model(name="noop", type="custom_model", path=str(model)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    for name, sleep_s in (("append", 0.05), ("slow", 1.0)):
        client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=ENDPOINT, model="azureml:noop@latest",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            instance_count=1, max_concurrency_per_instance=1, mini_batch_size=1, error_threshold=0,
            retry_settings={"max_retries": 0, "timeout": 60},
            environment_variables={"SCORED_FILE": str(scored), "SLEEP_S": str(sleep_s)}),
            set_default=name == "append").result()


def runs_workers(server_pid: int) -> bool:
    """Whether a server has worker processes now (children of its forkserver, a child of it)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    children = {pid for pid, parent in parents.items() if parent == server_pid}
    return any(parent in children for parent in parents.values())


def owners(client: MLClient, name: str) -> list[str]:
    return [e.data["owner"] for e in client.jobs.events(name) if e.status == "Preparing"]


def wait_all(client: MLClient, names: list[str], timeout: float) -> dict[str, object]:
    deadline, final = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(final) < len(names):
        for name in names:
            if name not in final:
                job = client.jobs.get(name)
                if job.status in ("Completed", "Failed", "Canceled"):
                    final[name] = job
        time.sleep(0.3)
    assert len(final) == len(names), f"{len(names) - len(final)} job(s) did not end in {timeout}s"
    return final


def test_two_servers_on_one_postgresql(tmp_path: Path, postgres_url: str) -> None:
    home, data, scored = tmp_path / "home", tmp_path / "data", tmp_path / "scored.txt"
    for i in range(JOBS):
        (data / "one").mkdir(parents=True, exist_ok=True)
        (data / "one" / f"job-{i:02d}.csv").write_text(f"x\n{i}\n")
    for i in range(6):
        (data / "six").mkdir(parents=True, exist_ok=True)
        (data / "six" / f"slow-{i}.csv").write_text(f"x\n{i}\n")
    with fresh_database(postgres_url) as url:
        env = {"BATCHPOINT_DATABASE_URL": url, "BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "1"}
        a = start_server(home, env)
        b = start_second(home, env)
        servers = [a, b]
        try:
            assert a.url != b.url
            with MLClient(endpoint=a.url, home=home) as ca, MLClient(endpoint=b.url, home=home) as cb:
                # one API: what is created through one server is read through the other
                deploy(ca, tmp_path, scored, data)
                assert {d.name for d in cb.batch_deployments.list(endpoint_name=ENDPOINT)} == {"append", "slow"}

                names = []
                for i in range(JOBS):
                    client = (ca, cb)[i % 2]
                    names.append(client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                        type="uri_file", path=f"azureml://datastores/shareddata/paths/one/job-{i:02d}.csv")).name)
                final = wait_all(ca, names, timeout=180)
                assert {j.status for j in final.values()} == {"Completed"}, \
                    {n: (j.status, j.status_message) for n, j in final.items() if j.status != "Completed"}
                runs = Counter(scored.read_text().split())
                assert runs == Counter({f"job-{i:02d}.csv": 1 for i in range(JOBS)}), runs  # each exactly once
                claimed_by = Counter(o for n in names for o in owners(cb, n))
                assert sum(claimed_by.values()) == JOBS and len(claimed_by) == 2, claimed_by  # both took jobs

                # a server killed mid-job: the other resumes it
                scored.write_text("")
                job = cb.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="slow", input=Input(
                    type="uri_folder", path="azureml://datastores/shareddata/paths/six")).name
                deadline = time.monotonic() + 60
                while cb.jobs.get(job).progress.mini_batches_completed < 2:
                    assert time.monotonic() < deadline, cb.jobs.get(job).status_message
                    time.sleep(0.1)
                owner = owners(cb, job)[-1]
                doomed = next(s for s in (a, b) if runs_workers(s.proc.pid))  # the one scoring the job
                survivor, client = (b, cb) if doomed is a else (a, ca)
                doomed.proc.send_signal(signal.SIGKILL)
                doomed.proc.wait(timeout=10)
                done = client.jobs.wait(job, timeout=120, poll=0.2)
                assert done.status == "Completed", (done.status_message, survivor.log()[-3000:])
                history = [e.status for e in client.jobs.events(job) if e.type == "status"]
                assert "Crashed" in history and history[-1] == "Completed", history
                assert owners(client, job)[-1] != owner  # claimed again, by the other server
                assert done.progress.files_completed == 6 and done.progress.files_failed == 0
                again = Counter(scored.read_text().split())
                assert set(again) == {f"slow-{i}.csv" for i in range(6)}, again
                assert sum(again.values()) <= 6 + 1, again  # finished mini-batches are not scored again
        finally:
            for server in servers:
                if server.proc.poll() is None:
                    stop_server(server)
