"""A server killed with SIGKILL in the middle of a job: a new server on the same home resumes the
job (its heartbeat went stale) from the mini-batches already finished, and it completes with every
row, in order, and the same counts and failures as a run without a crash."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, start_server, stop_server, wait_job
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from fixtures.flows import expected_rows, predictions_of, wait_until, write_script

pytestmark = pytest.mark.timeout(240)

FAILING = "heart-unlabeled-0.csv"  # fails at once, so the first mini-batch is split and one piece fails
# One worker; mini-batch 0 = files 0 and 1, mini-batch 1 = files 2 and 3. Mini-batch 0 fails at once
# on file 0 and is split; its pieces go first (retries before new mini-batches): 0 (fails), 1 — then
# mini-batch 0 is finished and the server is killed, with mini-batch 1 not finished.
SLOW_SCORE_PY = """
import glob
import os
import time

import mlflow.pyfunc
import pandas as pd

model = None


def init():
    global model
    model = mlflow.pyfunc.load_model(glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/")[0])  # Azure's layout


def run(mini_batch):
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.environ["ATTEMPTS_FILE"], "a") as out:
            out.write(name + "\\n")
        if name == os.environ["FAIL_ON"]:
            raise ValueError(f"cannot score {name}")
        time.sleep(float(os.environ["SLEEP_S"]))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
    return pd.concat(frames, ignore_index=True)
"""


def test_job_resumes_after_the_server_is_killed(tmp_path: Path, heart_model_dir: Path) -> None:
    home = tmp_path / "home"
    attempts = tmp_path / "attempts.txt"
    code = write_script(tmp_path / "code", SLOW_SCORE_PY)
    first = start_server(home)
    second = None
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            client.models.create_or_update(Model(name="heart-classifier", type="mlflow_model", path=str(heart_model_dir)))
            client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="heart-crash")).result()
            client.batch_deployments.begin_create_or_update(BatchDeployment(
                name="slow", endpoint_name="heart-crash", model="azureml:heart-classifier@latest",
                code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
                instance_count=1, max_concurrency_per_instance=1, mini_batch_size=2, error_threshold=-1,
                retry_settings={"max_retries": 0, "timeout": 60},
                environment_variables={"ATTEMPTS_FILE": str(attempts), "SLEEP_S": "1.5", "FAIL_ON": FAILING},
            ), set_default=True).result()
            job = client.batch_endpoints.invoke(endpoint_name="heart-crash",
                                                input=Input(type="uri_folder", path=str(HEART_UNLABELED)))

            def a_batch_done() -> bool:
                p = client.jobs.get(job.name).progress
                return p.mini_batches_completed + p.mini_batches_failed >= 1

            wait_until(a_batch_done, 60, "a mini-batch finished")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        assert len(set(attempts.read_text().split())) < 4, "the job ended before the kill; nothing to resume"

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home)  # at once: the dead server's heartbeat is not stale yet
        with MLClient(endpoint=second.url, home=home) as client:
            final = wait_job(client, job.name, timeout=90)
            assert final.status == "Completed", (final.status_message, final.error, second.log()[-3000:])
            p = final.progress
            assert (p.files_completed, p.files_failed, p.rows) == (3, 1, HEART_ROWS - 100)
            assert (p.mini_batches_total, p.mini_batches_completed, p.mini_batches_failed) == (2, 1, 1)
            assert [Path(f.file).name for f in final.failures] == [FAILING]
            assert FAILING in (final.status_message or ""), final.status_message
            steps = [s["name"] for s in final.phases if s["kind"] == "status"]  # `job show`'s history
            assert steps.count("Crashed") == 1 and steps.index("Crashed") < len(steps) - 1, steps
            assert final.server == client._transport.json("GET", "/health")["server"]  # the server that resumed it
            saved = client.jobs.download(job.name, download_path=tmp_path / "out")
            by_name = {s.name: s for s in saved}
            assert sorted(by_name) == ["errors.jsonl", "predictions.csv"]
            errors = [json.loads(line) for line in by_name["errors.jsonl"].read_text().splitlines()]
            assert [Path(e["file"]).name for e in errors] == [FAILING], errors  # once, though its piece failed twice
            assert predictions_of(by_name["predictions.csv"], sep=" ") == [r for r in expected_rows(heart_model_dir) if r[2] != FAILING]
        assert "resumed" in second.log(), second.log()[-3000:]
        # both mini-batches' rows were read back from workers' segments (the first server's and the
        # resuming one's: a worker of the resumed job appends to a segment of its own, never the old one)
        entries = [json.loads(line) for line in (home / "jobs" / job.name / "done.jsonl").read_text().splitlines()]
        segments = {e["index"]: {s[0] for s in e.get("segments", {}).values()} for e in entries}
        assert sorted(segments) == [0, 1] and all(segments.values()) and not segments[0] & segments[1], entries
        # the finished (split) mini-batch is not scored again; only the one in flight at the kill is
        scored = attempts.read_text().split()
        assert scored.count(FAILING) == 2, scored  # the mini-batch, then its single-file piece
        assert scored.count("heart-unlabeled-1.csv") == 1, scored
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()
