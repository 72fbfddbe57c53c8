"""A job resumed after its server was killed scores exactly the files its manifest recorded.

(a) The input folder gains files (named to sort first) and loses files not yet scored while the
    server is down: the predictions hold each file of the first listing that still exists, each
    row once; the new files are not scored; each vanished file is named in the job's failures.
(h) A torn last line in ``done.jsonl`` and in ``manifest.jsonl`` (a crash in the middle of a
    write) is ignored on resume; here the listing had not ended at the kill, so the resumed job
    also goes on listing from where the manifest stops.

Each test runs its own server (it is killed with SIGKILL by pid) over a local data store whose
folder the test changes behind the server's back, as a user's shared folder changes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import ServerHandle, start_server, stop_server, wait_job
from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, MLClient, Model
from fixtures.flows import wait_until, write_script

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "resume-ep"
DATASTORE = "sharedfiles"
ROWS_PER_FILE = 3

#: One script for every test of this package: each row of a file is written back as (id, file).
#: It sleeps per file while the file SLOW_FLAG exists, and with HOLD_UNTIL set it first waits
#: (at most 120 s) until that file exists, so a job can be held Running.
SCORE_PY = """
import os
import time

import pandas as pd


def init():
    pass


def run(mini_batch):
    hold = os.environ.get("HOLD_UNTIL")
    for _ in range(1200 if hold else 0):
        if os.path.exists(hold):
            break
        time.sleep(0.1)
    frames = []
    for path in mini_batch:
        if os.path.exists(os.environ.get("SLOW_FLAG", "/nonexistent")):
            time.sleep(float(os.environ.get("SLEEP_S", "0.3")))
        frame = pd.read_csv(path)
        frames.append(pd.DataFrame({"id": frame["id"], "file": os.path.basename(path)}))
    return pd.concat(frames, ignore_index=True)
"""


def write_files(folder: Path, names: list[str], first_id: int) -> dict[str, list[int]]:
    """Small CSV files with a unique ``id`` column: {file name: its ids}."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = {}
    for n, name in enumerate(names):
        ids[name] = [first_id + n * ROWS_PER_FILE + r for r in range(ROWS_PER_FILE)]
        pd.DataFrame({"id": ids[name], "x": [r * 0.5 for r in range(ROWS_PER_FILE)]}).to_csv(folder / name, index=False)
    return ids


def deploy(client: MLClient, tmp: Path, data_root: Path, name: str = "script", **settings: Any) -> None:
    """A local data store over ``data_root``, and endpoint ENDPOINT with a deployment of SCORE_PY
    (one worker, one file per mini-batch, no retries unless ``settings`` say otherwise)."""
    client.datastores.create_or_update(Datastore(name=DATASTORE, type="local", path=str(data_root)))
    model_dir = tmp / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "weights.txt").write_text("none\n")
    client.models.create_or_update(Model(name="noop", type="custom_model", path=str(model_dir)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    code = write_script(tmp / "code", SCORE_PY)
    spec = {"instance_count": 1, "max_concurrency_per_instance": 1, "mini_batch_size": 1, "error_threshold": -1,
            "retry_settings": {"max_retries": 0, "timeout": 60}, **settings}
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name=name, endpoint_name=ENDPOINT, model="azureml:noop@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"), **spec,
    ), set_default=True).result()


def scored_ids(client: MLClient, job: str, folder: Path) -> list[int]:
    # the predictions file (an errors file comes beside it when files failed)
    (saved,) = [p for p in client.jobs.download(job, download_path=folder) if p.name != "errors.jsonl"]
    return [int(i) for i in pd.read_csv(saved, names=["id", "file"], sep=" ")["id"]]


def kill(handle: ServerHandle) -> None:
    handle.proc.send_signal(signal.SIGKILL)
    handle.proc.wait(timeout=10)
    (handle.home / "server.json").unlink(missing_ok=True)


def done_lines(home: Path, job: str) -> int:
    path = home / "jobs" / job / "done.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_until_killed(tmp_path: Path, folder: str, done: int, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """Start a server, invoke the slow script on ``<data store>/<folder>``, SIGKILL the server once
    ``done`` mini-batches are finished; (home, job name). Scoring is fast from when slow.flag goes."""
    home = tmp_path / "home"
    (tmp_path / "slow.flag").touch()
    handle = start_server(home, env)
    try:
        with MLClient(endpoint=handle.url, home=home) as client:
            deploy(client, tmp_path, tmp_path / "shared",
                   environment_variables={"SLOW_FLAG": str(tmp_path / "slow.flag"), "SLEEP_S": "0.3"})
            job = client.batch_endpoints.invoke(
                endpoint_name=ENDPOINT, input=Input(type="uri_folder", path=f"azureml://datastores/{DATASTORE}/paths/{folder}"))
            wait_until(lambda: done_lines(home, job.name) >= done, 90, f"{done} mini-batches done")
    finally:
        kill(handle)
    assert done_lines(home, job.name) < done + 10, "the job was nearly over before the kill; nothing to resume"
    return home, job.name


def resume(home: Path) -> tuple[ServerHandle, MLClient]:
    """A new server on the same home (it resumes the job once the dead one's heartbeat is stale)."""
    handle = start_server(home)
    return handle, MLClient(endpoint=handle.url, home=home)


def test_resumed_job_scores_the_first_listing_only(tmp_path: Path) -> None:
    data = tmp_path / "shared" / "in"
    originals = write_files(data, [f"f{i:02d}.csv" for i in range(30)], first_id=1000)
    home, job = run_until_killed(tmp_path, "in", done=5)
    added = write_files(data, [f"a{i:02d}.csv" for i in range(10)], first_id=5000)  # names that sort first
    vanished = ["f27.csv", "f28.csv", "f29.csv"]  # the last to score: not scored yet
    for name in vanished:
        (data / name).unlink()
    (tmp_path / "slow.flag").unlink()

    handle, client = resume(home)
    try:
        final = wait_job(client, job, timeout=150)
        assert final.status == "Completed", (final.status_message, final.error, handle.log()[-3000:])
        ids = scored_ids(client, job, tmp_path / "out")
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} row(s) scored twice"
        expected = sorted(i for name, file_ids in originals.items() if name not in vanished for i in file_ids)
        assert sorted(ids) == expected
        assert not set(ids) & {i for file_ids in added.values() for i in file_ids}, "files added later were scored"
        assert sorted(Path(f.file).name for f in final.failures) == vanished, final.failures
        p = final.progress
        assert (p.files_total, p.files_completed, p.files_failed) == (30, 27, 3), p
        assert all(name in (final.status_message or "") for name in vanished), final.status_message
    finally:
        client.close()
        stop_server(handle)


def test_torn_last_lines_of_the_resume_logs_are_ignored(tmp_path: Path) -> None:
    files = write_files(tmp_path / "shared" / "many", [f"f{i:03d}.csv" for i in range(300)], first_id=0)
    # a lister queue of 20 files: the listing is still going on (held by the queue) at the kill
    home, job = run_until_killed(tmp_path, "many", done=3, env={"BATCHPOINT_JOBS__LISTING_QUEUE_FILES": "20"})
    folder = home / "jobs" / job
    manifest = folder / "manifest.jsonl"
    listed_at_kill = len(manifest.read_text().splitlines()) if manifest.exists() else 0
    with open(folder / "done.jsonl", "a") as out:  # a crash in the middle of a write
        out.write('{"index": 3, "files_compl')
    if manifest.exists():
        with open(manifest, "a") as out:
            out.write('{"index": 271, "files": [["input_data", "ma')
    (tmp_path / "slow.flag").unlink()

    handle, client = resume(home)
    try:
        final = wait_job(client, job, timeout=150)
        assert final.status == "Completed", (final.status_message, final.error, handle.log()[-3000:])
        ids = scored_ids(client, job, tmp_path / "out")
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} row(s) scored twice"
        assert sorted(ids) == sorted(i for file_ids in files.values() for i in file_ids)
        p = final.progress
        assert (p.files_total, p.files_completed, p.files_failed, p.mini_batches_total) == (300, 300, 0, 300), p
    finally:
        client.close()
        stop_server(handle)
    # the listing had not ended at the kill (the lister's queue was full): the resumed job went on from the manifest
    assert 0 < listed_at_kill < 300, listed_at_kill
    lines = manifest.read_text().splitlines()
    assert len(lines) == 301 and '"complete":true' in lines[-1], lines[-1]


def test_a_corrupt_line_before_the_last_fails_the_job_naming_it(tmp_path: Path) -> None:
    write_files(tmp_path / "shared" / "in", [f"f{i:02d}.csv" for i in range(30)], first_id=0)
    home, job = run_until_killed(tmp_path, "in", done=3)
    done = home / "jobs" / job / "done.jsonl"
    lines = done.read_text().splitlines()
    done.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    (tmp_path / "slow.flag").unlink()

    handle, client = resume(home)
    try:
        final = wait_job(client, job, timeout=60)
        assert final.status == "Failed", final.status
        message = final.status_message or ""
        assert str(done) in message and "line 2" in message and "invoke it again" in message, message
    finally:
        client.close()
        stop_server(handle)
