"""Scoring code that hangs, exits, under-returns or floods its log (issue 19, sections 1, 2, 3 and
the log cap of 7), on a real server with real worker processes.

* ``init()`` that never returns: bounded by ``settings.init_timeout``; the job fails naming
  ``init()``, the limit and the worker log, and ``job stream`` shows "running init() on N workers".
* ``run()`` returning fewer results than files, or a dict: the shortfall is charged to
  ``error_threshold`` (Azure's rule: one element per input scored), a wrong type is a user failure
  saying what ``run()`` must return; a job failed on the threshold keeps what it scored (partial).
* a worker that dies inside ``run()`` (``os._exit(3)``; a SIGKILL it sends itself after taking
  300 MiB, as the OOM killer would; the kernel's OOM killer in a real 256 MiB memory cgroup the
  worker joins in ``init()``, where the machine allows one): that mini-batch's failure, kind user,
  and the job goes on.
* a worker writing 60 MiB to its stdout (and a child process of it writing more): its log is cut
  at ``jobs.worker_log_max_bytes`` (20 MiB), one older copy kept, and says so.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, Model
from conftest import wait_job
from fixtures.flows import wait_until, write_script

pytestmark = pytest.mark.timeout(240)

SCORE_PY = """
import os
import signal
import subprocess
import sys
import time

import pandas as pd


def init():
    if os.environ.get("INIT_HANG"):
        print("init(): waiting for a lock that is never released", flush=True)
        time.sleep(3600)
    if os.environ.get("OOM_CGROUP"):  # this worker into the test's memory cgroup (a limit of 256 MiB)
        with open(os.path.join(os.environ["OOM_CGROUP"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    for name in names:
        if name == os.environ.get("EXIT_ON"):
            print(f"run(): giving up on {name}", flush=True)
            os._exit(3)
        if name == os.environ.get("OOM_ON"):  # 1 GiB in a 256 MiB cgroup: the kernel's OOM killer
            hog = bytearray(1 << 30)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
        if name == os.environ.get("KILL_ON"):
            hog = bytearray(300 << 20)
            for i in range(0, len(hog), 4096):  # touch every page: 300 MiB resident
                hog[i] = 1
            time.sleep(1.2)
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    mode = os.environ.get("MODE", "")
    if mode == "dict":
        return {"a": 1}
    if mode == "loud":  # 60 MiB from this process, 8 MiB from a child of it, about 10 MiB/s
        line = (b"x" * 1023 + b"\\n") * 1024
        for _ in range(60):
            os.write(1, line)
            time.sleep(0.1)
        child = "import os, time\\nfor _ in range(8):\\n    os.write(1, b'y' * (1 << 20))\\n    time.sleep(0.1)"
        subprocess.run([sys.executable, "-c", child])
        time.sleep(0.6)
    rows = [f"{name},{len(pd.read_csv(path))}" for name, path in zip(names, mini_batch)]
    if mode == "short":  # 3 results for a 5-file mini-batch
        return rows[:3]
    return rows
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_script(tmp_path_factory.mktemp("faults-code"), SCORE_PY)


@pytest.fixture(scope="module")
def model(ml_client: Any, heart_model_dir: Path) -> str:
    ml_client.models.create_or_update(Model(name="faults-code-heart", type="mlflow_model", path=str(heart_model_dir)))
    return "azureml:faults-code-heart@latest"


def _deploy(ml_client: Any, endpoint: str, code: Path, model: str, **settings: Any) -> None:
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    spec = {"instance_count": 1, "max_concurrency_per_instance": 1, "mini_batch_size": 1, "error_threshold": -1,
            "retry_settings": {"max_retries": 0, "timeout": 120}, **settings}
    spec.setdefault("env_manager", "local")
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="code", endpoint_name=endpoint, model=model,
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"), **spec),
        set_default=True).result()


def _files(folder: Path, count: int) -> Path:
    """``count`` 3-row CSV files unique to the test (their upload is its own)."""
    folder.mkdir(parents=True)
    token = uuid.uuid4().hex
    for i in range(count):
        (folder / f"file-{i:02d}.csv").write_text(f"token,i\n{token},1\n{token},2\n{token},3\n")
    return folder


def _invoke(ml_client: Any, endpoint: str, folder: Path, **env: str) -> str:
    return ml_client.batch_endpoints.invoke(endpoint_name=endpoint, input=Input(type="uri_folder", path=str(folder)),
                                            environment_variables=dict(env)).name


def _logs(server: Any, name: str) -> str:
    folder = server.home / "jobs" / name / "logs"
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("worker-*.log")))


# -- 1. init() that never returns ------------------------------------------------------------------------------------

def test_an_init_that_never_returns_fails_the_job_naming_init_the_limit_and_the_log(
        ml_client: Any, cli_inproc: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="faults-init-hang")).result()
    yaml_file = tmp_path / "deployment.yml"
    yaml_file.write_text(
        f"name: hang\nendpoint_name: faults-init-hang\nmodel: {model}\nenv_manager: local\n"
        f"code_configuration:\n  code: {code}\n  scoring_script: score.py\n"
        "resources:\n  instance_count: 1\n"
        "settings:\n  max_concurrency_per_instance: 1\n  mini_batch_size: 1\n  init_timeout: 4\n")
    cli_inproc("batch-deployment", "create", "-f", str(yaml_file), "--set-default")
    shown = json.loads(cli_inproc("batch-deployment", "show", "-n", "hang", "-e", "faults-init-hang", "-o", "json").out)
    assert shown["settings"]["init_timeout"] == 4, shown["settings"]
    refused = cli_inproc("batch-deployment", "create", "-f", str(yaml_file), "--set", "settings.init_timeout=0",
                  "-n", "hang-zero", check=False)
    assert refused.code != 0 and "init_timeout" in refused.err + refused.out, (refused.err, refused.out)

    name = _invoke(ml_client, "faults-init-hang", _files(tmp_path / "data", 2), INIT_HANG="1")
    job = wait_job(ml_client, name, timeout=90)  # three inits of 4 s each, not Running forever
    assert job.status == "Failed", (job.status, job.status_message)
    message = job.status_message or ""
    assert "init()" in message and "settings.init_timeout (4 s)" in message and "3 times in a row" in message, message
    assert "logs/worker-0.log" in message and str(server.home) not in message, message  # no server path
    assert job.error["code"] == "UserError" and job.error["init_timeout"] == 4, job.error
    logs = _logs(server, name)
    assert "init(): waiting for a lock" in logs, logs[-2000:]  # (the limit counts from the worker's start)
    assert logs.count("did not return within settings.init_timeout (4 s)") == 3, logs[-2000:]
    stream = cli_inproc("job", "stream", "-n", name, check=False)
    assert "running init() on 1 worker" in stream.out + stream.err, stream.out + stream.err
    phases = [e for e in ml_client.jobs.events(name) if e.type == "phase" and e.data.get("phase") == "init()"]
    assert [e.data["state"] for e in phases] == ["started", "failed"], [(e.data, e.message) for e in phases]


# -- 2. run() returning fewer results than files, or a dict -------------------------------------------------------

def test_a_shortfall_is_charged_to_error_threshold_and_named(
        ml_client: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-short", code, model, mini_batch_size=5)
    name = _invoke(ml_client, "faults-run-short", _files(tmp_path / "data", 10), MODE="short")
    job = wait_job(ml_client, name)
    assert job.status == "Completed", (job.status_message, job.error)  # error_threshold -1 lets them through
    assert job.progress.files_completed == 6 and job.progress.files_failed == 4, job.progress
    assert job.progress.rows == 6 and job.progress.mini_batches_completed == 2
    assert len(job.failures) == 2 and all(f.kind == "user" and f.file is None for f in job.failures)
    first = sorted(job.failures, key=lambda f: f.mini_batch)[0]
    assert "run() returned 3 result(s) for the 5 files of mini-batch 00000000-0000" in first.error, first.error
    assert "2 file(s) without a result are counted as failed" in first.error, first.error
    assert "completed with 4 failed file(s)" in (job.status_message or ""), job.status_message
    assert "run() returned 3 result(s) for its 5 files" in _logs(server, name)


def test_a_shortfall_counts_under_summary_only_too(ml_client: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-short-s", code, model, mini_batch_size=5, output_action="summary_only")
    name = _invoke(ml_client, "faults-run-short-s", _files(tmp_path / "data", 10), MODE="short")
    job = wait_job(ml_client, name)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.files_completed == 6 and job.progress.files_failed == 4 and job.progress.rows == 6


def test_a_shortfall_past_error_threshold_fails_the_job_and_keeps_a_partial_output(
        ml_client: Any, cli_inproc: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-short-t", code, model, mini_batch_size=5, error_threshold=1)
    name = _invoke(ml_client, "faults-run-short-t", _files(tmp_path / "data", 10), MODE="short")
    job = wait_job(ml_client, name)
    assert job.status == "Failed", (job.status, job.status_message)
    assert "more than error_threshold 1 allows" in job.status_message and "ResultShortfall" in job.status_message
    # written right after the job is recorded Failed, as a canceled job's is after Canceled
    job = wait_until(lambda: (j := ml_client.jobs.get(name)).outputs["score"].partial and j, 30, "a partial output")
    out = cli_inproc("job", "download", "-n", name, "--download-path", str(tmp_path / "out"))
    assert "PARTIAL" in out.err and "Failed" in out.err, out.err
    (predictions,) = (tmp_path / "out").rglob("predictions.csv")
    rows = predictions.read_text().splitlines()
    assert len(rows) == job.progress.rows and rows and all(r.endswith(",3") for r in rows), rows
    (marker,) = (tmp_path / "out").rglob("_PARTIAL.json")
    assert json.loads(marker.read_text())["status"] == "Failed"


def test_run_returning_a_dict_fails_each_file_saying_what_run_must_return(
        ml_client: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-dict", code, model, mini_batch_size=2)
    assert ml_client.batch_deployments.get("code", "faults-run-dict").settings.init_timeout == 600  # the default
    name = _invoke(ml_client, "faults-run-dict", _files(tmp_path / "data", 4), MODE="dict")
    job = wait_job(ml_client, name)
    assert job.progress.files_failed == 4 and job.progress.files_completed == 0 and job.progress.rows == 0
    assert len(job.failures) == 4 and {Path(f.file).name for f in job.failures} == {f"file-{i:02d}.csv" for i in range(4)}
    for failure in job.failures:
        assert failure.kind == "user" and "ResultTypeError" in failure.error, failure.error
        assert "run() returned a dict ({'a': 1})" in failure.error, failure.error
        assert "must return a pandas DataFrame or a list/array" in failure.error, failure.error


# -- 3. a worker that dies inside run() ---------------------------------------------------------------------------

def test_a_worker_exiting_inside_run_fails_that_mini_batch_as_the_users(
        ml_client: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-exit", code, model, max_concurrency_per_instance=2,
            retry_settings={"max_retries": 1, "timeout": 120})
    name = _invoke(ml_client, "faults-run-exit", _files(tmp_path / "data", 6), EXIT_ON="file-02.csv")
    job = wait_job(ml_client, name)
    assert job.status == "Completed", (job.status_message, job.error)  # the job went on
    assert job.progress.files_completed == 5 and job.progress.files_failed == 1 and job.progress.rows == 5
    (failure,) = job.failures
    assert Path(failure.file).name == "file-02.csv" and failure.kind == "user" and failure.attempt == 2, failure
    assert "exited by itself with exit code 3" in failure.error and "while run() was scoring" in failure.error
    assert "logs/worker-" in failure.error and str(server.home) not in failure.error, failure.error
    logs = _logs(server, name)
    assert logs.count("run(): giving up on file-02.csv") == 2, logs[-3000:]  # attempt 1 and its retry
    assert "platform failure, retried" not in logs, logs[-3000:]


def test_a_worker_killed_inside_run_on_every_retry_fails_that_mini_batch_not_the_job(
        ml_client: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-run-oom", code, model, error_threshold=1)
    name = _invoke(ml_client, "faults-run-oom", _files(tmp_path / "data", 3), KILL_ON="file-01.csv")
    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.files_completed == 2 and job.progress.files_failed == 1 and job.progress.rows == 2
    (failure,) = job.failures
    assert Path(failure.file).name == "file-01.csv" and failure.kind == "user", failure
    assert "killed by signal 9 (SIGKILL)" in failure.error and "OOM killer" in failure.error, failure.error
    assert "killed inside run() 4 times in a row" in failure.error, failure.error
    held = int(failure.error.split("it held at least ")[1].split(" MiB")[0])
    assert 300 <= held < 2000, failure.error  # the 300 MiB it took, as sampled
    assert _logs(server, name).count("platform failure, retried") == 3


def _memory_cgroup(limit: int) -> Path | None:
    """A memory cgroup of its own under this process's, limited to ``limit`` bytes (cgroup v1
    ``memory.limit_in_bytes``, v2 ``memory.max``), or None where this machine does not allow one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, limits = Path("/sys/fs/cgroup/memory") / path.lstrip("/"), ["memory.limit_in_bytes",
                                                                            "memory.memsw.limit_in_bytes"]
        elif hierarchy == "0" and controllers == "":
            base, limits = Path("/sys/fs/cgroup") / path.lstrip("/"), ["memory.max", "memory.swap.max"]
        else:
            continue
        folder = base / f"bp-oom-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()
        except OSError:
            continue
        try:
            (folder / limits[0]).write_text(str(limit))
        except OSError:
            folder.rmdir()
            continue
        try:
            (folder / limits[1]).write_text(str(limit) if "memsw" in limits[1] else "0")  # no swap to escape to
        except OSError:
            pass
        return folder
    return None


def test_a_worker_the_oom_killer_kills_in_its_memory_cgroup_fails_that_file_saying_so(
        ml_client: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    if os.environ.get("BATCHPOINT_WORKERS__ISOLATION", "none") != "none":
        pytest.skip("a fenced worker cannot join a cgroup itself (this test's way in); the session server fences")
    cgroup = _memory_cgroup(256 << 20)
    if cgroup is None:
        pytest.skip("this machine lets no memory cgroup be made here (needs root and a memory controller)")
    try:
        _deploy(ml_client, "faults-run-cgroup", code, model)
        name = _invoke(ml_client, "faults-run-cgroup", _files(tmp_path / "data", 3), OOM_CGROUP=str(cgroup),
                       OOM_ON="file-01.csv")
        job = wait_job(ml_client, name, timeout=120)
    finally:
        deadline = time.monotonic() + 20
        while True:  # empty once the job's workers are gone
            try:
                cgroup.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    assert job.status == "Completed", (job.status_message, job.error)  # the job went on
    assert job.progress.files_completed == 2 and job.progress.files_failed == 1
    (failure,) = job.failures
    assert Path(failure.file).name == "file-01.csv" and failure.kind == "user" and failure.attempt == 1, failure
    assert "was killed by the kernel's OOM killer (signal 9, SIGKILL)" in failure.error, failure.error
    assert "its limit: 256 MiB" in failure.error and "its cgroup held 256 MiB at its peak" in failure.error
    assert "platform failure, retried" not in _logs(server, name)  # the cgroup's count told: no platform retry


# -- 7. worker stdout capped ----------------------------------------------------------------------------------------

def test_a_worker_flooding_its_log_is_cut_at_the_limit_keeping_one_older_copy(
        ml_client: Any, server: Any, code: Path, model: str, tmp_path: Path) -> None:
    _deploy(ml_client, "faults-loud", code, model)
    name = _invoke(ml_client, "faults-loud", _files(tmp_path / "data", 1), MODE="loud")
    job = wait_job(ml_client, name)
    assert job.status == "Completed", (job.status_message, job.error)
    logs = server.home / "jobs" / name / "logs"
    current, older = logs / "worker-0.log", logs / "worker-0.log.1"
    limit = 20 << 20
    assert older.is_file() and current.is_file()
    # 68 MiB were written; each file holds at most the limit plus what came between two checks
    # (every 0.25 s; more on a machine this busy: 16 MiB of slack is 1.6 s of writing)
    assert current.stat().st_size < limit + (16 << 20) and older.stat().st_size < limit + (16 << 20), (
        current.stat().st_size, older.stat().st_size)
    text = current.read_text(errors="replace")
    assert "this worker's log passed its limit of 20971520 bytes" in text and "was cut" in text, text[:500]
    assert "mini-batch 00000000-0000 (1 files) scored" in text  # what came after the cut is there

