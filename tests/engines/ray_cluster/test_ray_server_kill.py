"""SIGKILL the server mid-job on Ray (issue 12, Faults), then start it again on the same home:

* the dead server's actors are gone (they are owned by the dead driver: Ray's state API lists them
  DEAD) and none of them scores another file after it;
* the job resumes on Ray: ``Crashed`` in its history, then Completed; the mini-batches finished
  before the kill are not scored again (counted from the side-effect file the scoring script
  appends a line to per file, as tests/engines/test_worker_kill.py does for the local pool);
* its output, on Azurite, holds every input row exactly once with the model's predictions in a
  clean run's order — assembled from the parts both servers' actors wrote to the staging area
  (none in the server's job folder), which is gone once the job is Completed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from conftest import start_server, stop_server
from fixtures.faults import assert_resumed_without_rescoring, finish_job, heart_copies, pids
from server.test_server_kill import FAST_BEAT, _free_port, _scored_by
from fixtures.flows import wait_until, write_script
from engines.ray_cluster.conftest import alive_actors, blobs_under, register_out_store

pytestmark = pytest.mark.timeout(240)

# the heart pickle scored file by file, leaving traces (tests/fixtures/faults.py's shape)
TRACED_PY = """
import glob
import os
import pickle
import time

import pandas as pd


def _trace(what, name):
    with open(os.environ["SIDE_EFFECTS"], "a") as out:
        out.write(f"{what} {name} {os.getpid()}\\n")


def init():
    global model
    path = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "model.pkl"), recursive=True)[0]
    with open(path, "rb") as f:
        model = pickle.load(f)
    open(os.path.join(os.environ["SIGNAL_DIR"], f"init-{os.getpid()}"), "w").close()


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        _trace("start", name)
        time.sleep(float(os.environ["SLEEP_S"]))
        frame = pd.read_csv(path)
        rows += [f"{i},{int(p)},{name}" for i, p in enumerate(model.predict(frame))]
        _trace("scored", name)
    return rows
"""


def _deploy(client: MLClient, ray_address: str, ray_token: str, model_dir: Path, code_dir: Path) -> None:
    client.compute.begin_create_or_update(AmlCompute(
        name="ray-cluster", type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
        max_instances=2)).result()
    client.models.create_or_update(Model(name="ray-kill-heart", type="custom_model", path=str(model_dir)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="ray-kill")).result()
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="ray", endpoint_name="ray-kill", model="azureml:ray-kill-heart@latest", compute="azureml:ray-cluster",
        code_configuration=CodeConfiguration(code=str(write_script(code_dir, TRACED_PY)), scoring_script="score.py"),
        instance_count=1, max_concurrency_per_instance=2, mini_batch_size=1, error_threshold=-1,
        retry_settings={"max_retries": 0, "timeout": 120}), set_default=True).result()


def _worker_logs(home: Path, name: str) -> str:
    return "".join(p.read_text() for p in sorted((home / "jobs" / name / "logs").glob("worker-*.log")))


def test_server_killed_mid_ray_job_resumes_on_ray_without_rescoring(
        tmp_path: Path, heart_model_dir: Path, heart_pickle_dir: Path, ray_address: str, ray_token: str,
        ray_driver: str, azurite_blob_url: str, out_container: Any) -> None:
    home, traces = tmp_path / "home", tmp_path / "traces"
    (traces / "signals").mkdir(parents=True)
    data = heart_copies(tmp_path / "data", copies=2)  # 8 files, one per mini-batch
    env = {**FAST_BEAT, "BATCHPOINT_SERVER__PORT": str(_free_port())}
    first = start_server(home, env)
    second = None
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            _deploy(client, ray_address, ray_token, heart_pickle_dir, tmp_path / "code")
            store = register_out_store(client, azurite_blob_url, "rayout-kill")
            parked = {a["actor_id"] for a in alive_actors()}  # other servers' actors kept warm (engines/ray_warm.py)
            name = client.batch_endpoints.invoke(
                endpoint_name="ray-kill", input=Input(type="uri_folder", path=str(data)),
                output_path=f"azureml://datastores/{store}/paths/server-kill",
                environment_variables={"SIGNAL_DIR": str(traces / "signals"),
                                       "SIDE_EFFECTS": str(traces / "side-effects.txt"), "SLEEP_S": "1.0"}).name
            # both actors in the job (on a loaded machine one may score 2 files while the other still starts)
            wait_until(lambda: client.jobs.get(name).progress.mini_batches_completed >= 2
                       and len(pids(traces, "init")) == 2, 90, "2 mini-batches done and both actors' init() run")
            old_workers = pids(traces, "init")
            # this job's actors: those whose process ran the script's init() (another server's actors,
            # parked or starting, may be alive beside them)
            old_actors = {a["actor_id"] for a in alive_actors(("ALIVE",)) if a.get("pid") in old_workers} - parked
            assert len(old_actors) == 2 and len(old_workers) == 2, (old_actors, old_workers)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        done_before = [json.loads(line)["index"] for line in (home / "jobs" / name / "done.jsonl").read_text().splitlines()]
        assert 2 <= len(done_before) < 8, done_before
        ready_before = _worker_logs(home, name).count("ready on Ray")  # 1 or 2: an actor may still be in init()

        # the dead driver's actors end with it (Ray's state API), and score nothing more
        wait_until(lambda: not old_actors & {a["actor_id"] for a in alive_actors()}, 15, "the old server's actors DEAD")
        scored_by_old = _scored_by(traces, old_workers)
        time.sleep(1.5)  # longer than a file's sleep: an actor still running would now have scored its file
        assert _scored_by(traces, old_workers) == scored_by_old, "an old actor went on scoring after its server died"

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home, env)
        final, history, saved = finish_job(second, name, tmp_path / "out")
        assert_resumed_without_rescoring(final, history, saved, second, heart_model_dir, data, traces, done_before)
        new_workers = pids(traces, "init") - old_workers
        assert _scored_by(traces, new_workers), new_workers  # the rest was scored by the new server's actors
        logs = _worker_logs(home, name)
        assert ready_before >= 1 and logs.count("ready on Ray") > ready_before, logs[-3000:]  # resumed on Ray
        assert list((home / "jobs" / name).glob("parts/*.csv")) == []
        assert blobs_under(out_container, f"azureml/{name}/parts/") == []
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()
