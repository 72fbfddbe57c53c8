"""SIGKILL the server while it writes a job's output (issue 19 §7): the local store writes the
output to a temporary ``.tmp-*`` file beside ``predictions.csv`` and renames it when done, so the
kill leaves a half-written one there. Before: it stayed for good (3.5 MB of it in the report). Now:
the resumed job removes it before writing its output again, and nothing was scored twice."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, MLClient, Model
from batchpoint.jobs.assembly import finished_parts
from batchpoint.jobs.folder import JobFolder
from conftest import start_server, stop_server

pytestmark = pytest.mark.timeout(240)

FILES, ROW_MB = 30, 4  # a 120 MB output: long enough to write that the kill lands while it is written
SCORE = '''
import os


def init():
    pass


def run(mini_batch):
    with open(os.environ["SCORED_FILE"], "a") as out:
        out.write("".join(os.path.basename(p) + "\\n" for p in mini_batch))
    return [os.path.basename(p) + " " + "x" * (int(os.environ["ROW_MB"]) << 20) for p in mini_batch]
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _temporaries(folder: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(folder) if e.name.startswith(".tmp-")]
    except FileNotFoundError:
        return []


def test_a_half_written_output_left_by_a_kill_in_finalizing_is_removed_on_resume(tmp_path: Path) -> None:
    home, data, out, scored = tmp_path / "home", tmp_path / "data", tmp_path / "out", tmp_path / "scored.txt"
    data.mkdir()
    out.mkdir()
    for i in range(FILES):
        (data / f"f-{i:02d}.csv").write_text(f"x\n{i}\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("none\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCORE)
    env = {"BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "0.5", "BATCHPOINT_SERVER__PORT": str(_free_port())}
    first = start_server(home, env)
    second = None
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            client.datastores.create_or_update(Datastore(name="outstore", type="local", path=str(out)))
            client.models.create_or_update(Model(name="noop", type="custom_model", path=str(tmp_path / "model")))
            client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="finalize-kill")).result()
            spec = {"env_manager": "local"} if "env_manager" in BatchDeployment.model_fields else {}
            client.batch_deployments.begin_create_or_update(BatchDeployment(
                name="big", endpoint_name="finalize-kill", model="azureml:noop@latest",
                code_configuration=CodeConfiguration(code=str(tmp_path / "code"), scoring_script="score.py"),
                instance_count=1, max_concurrency_per_instance=2, mini_batch_size=1, error_threshold=0,
                environment_variables={"SCORED_FILE": str(scored), "ROW_MB": str(ROW_MB)}, **spec),
                set_default=True).result()
            name = client.batch_endpoints.invoke(
                endpoint_name="finalize-kill", input=Input(type="uri_folder", path=str(data)),
                output_path="azureml://datastores/outstore/paths/results").name
            results = out / "results"
            deadline = time.monotonic() + 180
            while not _temporaries(results):  # the output being written: kill the server now
                assert time.monotonic() < deadline, client.jobs.get(name).status
                time.sleep(0.0005)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        left = _temporaries(results)
        assert left and not (results / "predictions.csv").exists(), (left, os.listdir(results))

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home, env)
        with MLClient(endpoint=second.url, home=home) as client:
            final = client.jobs.wait(name, timeout=120, poll=0.2)
            assert final.status == "Completed", (final.status_message, second.log()[-3000:])
            history = [e.status for e in client.jobs.events(name) if e.type == "status"]
            assert "Crashed" in history and history[-1] == "Completed", history
        assert _temporaries(results) == [], os.listdir(results)  # the half-written file is gone
        predictions = results / "predictions.csv"
        parts = finished_parts(JobFolder.local(home / "jobs", name))  # ranges of the workers' segments
        assert len(parts) == FILES and predictions.stat().st_size == sum(len(_read(p)) for p in parts)
        assert Counter(scored.read_text().split()) == Counter({f"f-{i:02d}.csv": 1 for i in range(FILES)})
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()


def _read(part: Any) -> bytes:
    with part.open("rb") as f:
        return f.read()
