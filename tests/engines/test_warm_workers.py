"""Issue 24 §4: fenced workers kept warm across jobs of a deployment (``engines/warm.py``).

Engine-level (no server), every worker in its bubblewrap sandbox. The scoring script's ``init()``
draws a token and leaves a file named after it in a shared folder; ``run()`` writes the token into
its rows. So "init() ran once" is one file, and "the same worker" is the same token in both jobs'
parts (and the same host pid in the pool):

* the second job of a deployment is served by the first job's worker: init() once, same pid, each
  job's log gets its own job's lines, each job's ``AZUREML_BI_OUTPUT_PATH`` files land in its own
  folder;
* each job's output action reaches the warm worker by name: a summary_only job writes no part, the
  append_row job after it does;
* a model version, a code change in place, other environment variables and another interpreter
  each start fresh workers;
* a parked worker that was killed is replaced by a cold one and the job completes;
* a hostile script in the second job finds nothing of the first job (its inputs, parts, files
  it left) and still nothing of the server (the probe of ``test_worker_isolation.py``);
* warm workers never serve another deployment (and show per deployment with their memory);
* ``warm_idle_s`` stops them;
* a store folder swapped for a link out of the store between two mini-batches: the file outside is
  not linked into the worker, that mini-batch fails saying why;
* a warm worker's files are linked by its link helper; a helper killed mid-job stops its worker and
  costs its mini-batches a retry on a fresh one, and the job completes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.engines.sandbox import check
from batchpoint.engines.warm import POOL, _warm_root
from batchpoint.storage.base import StorageSpec
from engines.test_worker_isolation import CANARY, HOSTILE_PY

pytestmark = pytest.mark.skipif(check() is not None, reason=f"bubblewrap does not work here: {check()}")

WARM_PY = '''
import os
import uuid

TOKEN = None


def init():
    global TOKEN
    TOKEN = uuid.uuid4().hex[:12]
    open(os.path.join(os.environ["SHARED"], "init-" + TOKEN), "w").close()
    print("init ran: " + TOKEN, flush=True)


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    print("run in " + TOKEN + ": " + ",".join(names), flush=True)
    with open(os.path.join(os.environ["AZUREML_BI_OUTPUT_PATH"], "bi-" + names[0] + ".txt"), "w") as f:
        f.write(TOKEN)
    return [name + "," + TOKEN for name in names]
'''


@pytest.fixture(autouse=True)
def _no_parked_workers():
    POOL.stop_all("the test ended")
    yield
    POOL.stop_all("the test ended")


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.shared = tmp_path / "shared"
        self.shared.mkdir(parents=True)
        self.shared.chmod(0o777)
        self.code = self.home / "code" / "c1"
        self.code.mkdir(parents=True)
        (self.code / "score.py").write_text(textwrap.dedent(WARM_PY).lstrip())
        self.model = self.home / "models" / "m" / "1"
        self.model.mkdir(parents=True)
        (self.model / "weights.txt").write_text("1\n")

    def data(self, name: str, files: list[str]) -> Path:
        folder = self.home / "datastores" / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / f).write_text("a\n1\n")
        return folder

    def job(self, name: str, data: Path, *, deployment: str = "ep/d1", idle: float = 60.0, model: Path | None = None,
            code: Path | None = None, python_exe: str | None = None, env: dict[str, str] | None = None,
            workers: int = 1, output_action: str = "append_row") -> EngineJob:
        folder = self.home / "jobs" / name
        for sub in ("parts", "logs", "outputs/score"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        environment = {"SHARED": str(self.shared), "AZUREML_BI_OUTPUT_PATH": str(folder / "outputs" / "score"),
                       **(env or {})}
        model_dir = str(model or self.model)
        return EngineJob(name=name, workers=workers,
                         scorer={"code_dir": str(code or self.code), "scoring_script": "score.py",
                                 "model_dir": model_dir, "azureml_model_dir": model_dir},
                         sources={"input": StorageSpec("local", {"path": str(data)}, None)},
                         policy=RetryPolicy(0, 60.0, -1), parts_dir=str(folder / "parts"),
                         logs_dir=str(folder / "logs"), environment=environment, python_exe=python_exe,
                         isolation={"home": str(self.home), "shared": [str(self.shared)], "warm_idle_s": idle,
                                    "inputs": {"input": ""}},
                         deployment=deployment, output_action=output_action)

    def inits(self) -> int:
        return len(list(self.shared.glob("init-*")))


def _run(job: EngineJob, files: list[str], start: int = 0) -> list:
    outcomes: list = []
    batches = [MiniBatch(start + i, (FileRef("input", f),)) for i, f in enumerate(files)]
    LocalPoolEngine().run(job, iter(batches), outcomes.append, threading.Event())
    failed = [o.error for o in outcomes if o.error is not None]
    assert not failed, failed
    assert len(outcomes) == len(files)
    return outcomes


def _rows(job: EngineJob) -> dict[str, str]:
    """file -> the token of the worker that scored it, from the job's parts."""
    rows = {}
    for part in sorted(Path(job.parts_dir).iterdir()):
        for line in part.read_text().splitlines():
            name, _, token = line.partition(",")
            rows[name.strip().strip('"')] = token.strip().strip('"')
    return rows


def _parked_pids(deployment: str = "ep/d1") -> list[int]:
    return sorted(w.proc.pid for w in POOL.parked if w.deployment == deployment)


def test_the_second_job_of_a_deployment_is_served_by_the_first_jobs_warm_worker(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    one = s.job("job-one", s.data("one", ["one-a.csv", "one-b.csv"]))
    _run(one, ["one-a.csv", "one-b.csv"])
    tokens_one = set(_rows(one).values())
    assert len(tokens_one) == 1 and s.inits() == 1
    pids = _parked_pids()
    assert len(pids) == 1, "the job's worker was not parked"

    two = s.job("job-two", s.data("two", ["two-a.csv", "two-b.csv", "two-c.csv"]))
    _run(two, ["two-a.csv", "two-b.csv", "two-c.csv"], start=10)
    assert set(_rows(two).values()) == tokens_one, "the second job was not scored by the warm worker"
    assert s.inits() == 1, "init() ran again"
    assert _parked_pids() == pids, "another process served the second job"
    # each job's log has its own job's lines only; its BI output files are in its own folder
    log_one = (Path(one.logs_dir) / "worker-0.log").read_text()
    log_two = (Path(two.logs_dir) / "worker-0.log").read_text()
    assert "one-a.csv" in log_one and "two-a.csv" not in log_one
    assert "two-a.csv" in log_two and "one-a.csv" not in log_two and "init ran" not in log_two
    assert "warm" in log_two
    bi_one = sorted(p.name for p in Path(one.environment["AZUREML_BI_OUTPUT_PATH"]).iterdir())
    bi_two = sorted(p.name for p in Path(two.environment["AZUREML_BI_OUTPUT_PATH"]).iterdir())
    assert bi_one == ["bi-one-a.csv.txt", "bi-one-b.csv.txt"]
    assert bi_two == ["bi-two-a.csv.txt", "bi-two-b.csv.txt", "bi-two-c.csv.txt"]
    # the parked worker's exchange folder holds nothing of either job
    [worker] = [w for w in POOL.parked]
    left = [p.relative_to(worker.exchange).as_posix() for p in worker.exchange.rglob("*") if p.is_file()]
    assert left == ["state"], left


def test_a_warm_worker_takes_each_jobs_output_action_by_name(tmp_path: Path) -> None:
    """The output action is not part of a warm worker's key: the next job's ``job`` message names
    its own (``worker/loop.py``), and the worker picks that writer: summary_only writes no part, the
    append_row job after it does again — all on the one worker whose init() ran once."""
    s = Setup(tmp_path)
    one = s.job("act-one", s.data("one", ["one-a.csv"]))
    _run(one, ["one-a.csv"])
    summary = s.job("act-two", s.data("two", ["two-a.csv", "two-b.csv"]), output_action="summary_only")
    outcomes = _run(summary, ["two-a.csv", "two-b.csv"], start=5)
    assert sum(o.rows for o in outcomes) == 2 and list(Path(summary.parts_dir).iterdir()) == []
    three = s.job("act-three", s.data("three", ["three-a.csv"]))
    _run(three, ["three-a.csv"], start=9)
    assert set(_rows(three)) == {"three-a.csv"} and set(_rows(three).values()) == set(_rows(one).values())
    assert s.inits() == 1, "init() ran again: the jobs were not served by the one warm worker"


def test_a_new_model_version_changed_code_environment_or_interpreter_start_fresh_workers(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    data = s.data("d", ["a.csv"])
    _run(s.job("base", data), ["a.csv"])
    seen = {next(iter(_rows(s.job("base", data)).values()))}
    assert s.inits() == 1

    model_v2 = s.home / "models" / "m" / "2"
    model_v2.mkdir(parents=True)
    (model_v2 / "weights.txt").write_text("2\n")
    wrapper = tmp_path / "env2" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f"#!/bin/sh\nexec {Path(os.sys.executable).absolute()} \"$@\"\n")
    wrapper.chmod(0o755)
    changes = {
        "model": dict(model=model_v2),
        "environment variables": dict(env={"MY_SETTING": "2"}),
        "interpreter": dict(python_exe=str(wrapper)),
    }
    for i, (what, change) in enumerate(changes.items()):
        job = s.job(f"changed-{i}", data, **change)
        _run(job, ["a.csv"])
        token = next(iter(_rows(job).values()))
        assert token not in seen, f"a warm worker served a job with another {what}"
        seen.add(token)
        assert s.inits() == 2 + i, what
    # the scoring script changed in place (same folder)
    time.sleep(0.01)
    (s.code / "score.py").write_text((s.code / "score.py").read_text() + "\n# v2\n")
    job = s.job("changed-code", data)
    _run(job, ["a.csv"])
    assert next(iter(_rows(job).values())) not in seen, "a warm worker served a job whose code changed"
    assert s.inits() == 5


def test_a_killed_parked_worker_is_replaced_by_a_cold_one(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    data = s.data("d", ["a.csv", "b.csv"])
    one = s.job("one", data)
    _run(one, ["a.csv"])
    [worker] = list(POOL.parked)
    os.kill(worker.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while worker.proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    two = s.job("two", data)
    _run(two, ["a.csv", "b.csv"])
    assert set(_rows(two).values()).isdisjoint(_rows(one).values())
    assert s.inits() == 2
    assert not worker.exchange.exists(), "the dead worker's exchange folder was left"


PROBE = HOSTILE_PY.split("\ndef init():")[0]
HOSTILE_WARM_PY = PROBE + r'''

TOKEN = None


def _leftovers():
    """Everything the worker can see of its exchange folder (and /tmp) that a job before left."""
    seen = []
    exchange = os.path.dirname(os.getcwd())
    for top in (exchange, "/tmp", os.environ.get("TMPDIR", "/tmp")):
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                if name.startswith(("left-", "one-")) or name.startswith("00000000"):
                    seen.append(f"left:{os.path.join(root, name)}")
    for path in (os.environ["ONE_DATA"], os.environ["ONE_JOB"]):
        if os.path.exists(path):
            seen.append(f"sees:{path}")
    return seen


def init():
    global found_at_init, TOKEN
    import uuid
    TOKEN = uuid.uuid4().hex[:12]
    found_at_init = probe()


def run(mini_batch):
    import pandas
    names = [os.path.basename(p) for p in mini_batch]
    found_now = set(found_at_init) | set(probe()) | {f for f in _leftovers() if not any(n in f for n in names)}
    for path in mini_batch:  # its input is a hard link of the store's file: it must not write through it
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


def test_a_hostile_script_in_the_next_job_finds_nothing_of_the_job_before_nor_of_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHPOINT_TEST_CANARY", CANARY)
    s = Setup(tmp_path)
    for name in ("owner.key", "server.key", "metadata.db"):
        (s.home / name).write_text("secret\n")
    (s.code / "score.py").write_text(HOSTILE_WARM_PY)
    data_one, data_two = s.data("one", ["one-a.csv"]), s.data("two", ["two-a.csv"])
    env = {"PROBE_HOME": str(s.home), "OTHER_JOB": "one", "SERVER_PID": str(os.getpid()),
           "ONE_DATA": str(data_one), "ONE_JOB": str(s.home / "jobs" / "one")}
    one = s.job("one", data_one, env=env)
    _run(one, ["one-a.csv"])
    two = s.job("two", data_two, env=env)
    _run(two, ["two-a.csv"], start=5)
    rows = {}
    for job in (one, two):
        for part in Path(job.parts_dir).iterdir():
            for line in part.read_text().splitlines():
                if line.startswith(("one-", "two-")):
                    rows[line.split(" ")[0]] = line.split(" ")  # append_row: space-separated
    assert rows["one-a.csv"][2] == rows["two-a.csv"][2], "the second job was not served warm: nothing tested"
    assert rows["one-a.csv"][1] == "nothing", rows["one-a.csv"]
    assert rows["two-a.csv"][1] == "nothing", rows["two-a.csv"]
    assert (data_one / "one-a.csv").read_text() == "a\n1\n" and (data_two / "two-a.csv").read_text() == "a\n1\n"
    # what job one's script left in its working folder and /tmp is gone; its BI file went to job one
    assert [p.name for p in Path(one.environment["AZUREML_BI_OUTPUT_PATH"]).iterdir()] == ["left-one-a.csv"]


def test_warm_workers_never_serve_another_deployment_and_show_per_deployment(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    data = s.data("d", ["a.csv"])
    one = s.job("one", data, deployment="ep/d1")
    _run(one, ["a.csv"])
    other = s.job("other", data, deployment="ep/d2")
    _run(other, ["a.csv"])
    assert s.inits() == 2
    assert set(_rows(other).values()).isdisjoint(_rows(one).values())
    again = s.job("again", data, deployment="ep/d1")
    _run(again, ["a.csv"])
    assert _rows(again) == _rows(one), "the deployment's own warm worker did not serve it"
    shown = POOL.snapshot()
    assert sorted(shown) == ["ep/d1", "ep/d2"] and all(n == 1 and rss > 10 << 20 for n, rss in shown.values())
    from batchpoint.server.metrics import WarmCollector

    text = {(m.name, s.labels.get("deployment"), s.value) for m in WarmCollector().collect() for s in m.samples}
    assert ("batchpoint_warm_workers", "ep/d1", 1) in text and ("batchpoint_warm_workers", "ep/d2", 1) in text


def test_the_idle_timeout_stops_parked_workers(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    job = s.job("one", s.data("d", ["a.csv"]), idle=1.0)
    _run(job, ["a.csv"])
    [worker] = list(POOL.parked)
    deadline = time.monotonic() + 15
    while (POOL.parked or worker.proc.is_alive() or worker.exchange.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not POOL.parked and not worker.proc.is_alive()
    assert not worker.exchange.exists()


def test_no_worker_is_kept_when_warm_idle_s_is_0(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    _run(s.job("one", s.data("d", ["a.csv"]), idle=0), ["a.csv"])
    assert not POOL.parked


def test_exchange_folders_a_killed_server_left_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    data = s.data("d", ["a.csv"])
    _run(s.job("one", data), ["a.csv"])
    [live] = list(POOL.parked)
    stale = s.home / "warm" / "deadbeef0000"
    (stale / "parts").mkdir(parents=True)
    (stale / "parts" / "00000000-0000.csv").write_text("rows of a job of a server that was killed\n")
    (s.home / "warm" / "deadbeef0000.log").write_text("")
    POOL._swept.clear()  # as a server started on this home after the one that was killed
    _run(s.job("other", data, deployment="ep/d2"), ["a.csv"])  # a cold start sweeps
    assert not stale.exists() and not (s.home / "warm" / "deadbeef0000.log").exists()
    assert live.exchange.exists() and live.alive()


SLOW_FIRST_INIT_PY = WARM_PY.replace('''    TOKEN = uuid.uuid4().hex[:12]
''', '''    TOKEN = uuid.uuid4().hex[:12]
    try:  # the first worker's init() is slow: the job ends while it still runs
        os.close(os.open(os.path.join(os.environ["SHARED"], "slow"), os.O_CREAT | os.O_EXCL))
        import time
        time.sleep(3)
    except FileExistsError:
        pass
''')


def test_a_worker_still_in_init_when_the_job_ends_is_kept_once_init_returns(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    (s.code / "score.py").write_text(SLOW_FIRST_INIT_PY)
    data = s.data("d", ["a.csv", "b.csv", "c.csv", "d.csv"])
    one = s.job("one", data, workers=2)
    _run(one, ["a.csv"])
    assert len(set(_rows(one).values())) == 1
    deadline = time.monotonic() + 30
    while len(POOL.parked) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(POOL.parked) == 2, "the worker still in init() at the job's end was not kept"
    assert s.inits() == 2
    two = s.job("two", data, workers=2)
    _run(two, ["a.csv", "b.csv", "c.csv", "d.csv"], start=10)
    assert s.inits() == 2, "init() ran again"
    assert "init ran" not in (Path(two.logs_dir) / "worker-0.log").read_text() + (
        Path(two.logs_dir) / "worker-1.log").read_text()


# --- a real server: two invokes of one deployment, the second served warm, outputs where they belong

SERVER_PY = """
import os
import uuid

import pandas

TOKEN = None


def init():
    global TOKEN
    TOKEN = uuid.uuid4().hex[:12]


def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    for name in names:
        with open(os.path.join(os.environ["AZUREML_BI_OUTPUT_PATH"], "bi-" + name), "w") as f:
            f.write(TOKEN)
    return pandas.DataFrame({"file": names, "token": [TOKEN] * len(names)})
"""


def test_a_servers_second_job_of_a_deployment_is_served_warm_with_its_outputs_in_place(
        tmp_path: Path, heart_model_dir: Path) -> None:
    from batchpoint import Input, MLClient
    from conftest import start_server, stop_server, wait_job
    from fixtures.faults import make_endpoint

    inputs = {}
    for name in ("one", "two"):
        folder = tmp_path / f"in-{name}"
        folder.mkdir()
        for i in range(3):
            (folder / f"{name}-{i}.csv").write_text("age\n50\n")
        inputs[name] = folder
    home = tmp_path / "home"
    server = start_server(home, {"BATCHPOINT_WORKERS__ISOLATION": "bwrap"})
    client = MLClient(endpoint=server.url, home=server.home)
    try:
        make_endpoint(client, "warm", heart_model_dir, tmp_path / "code", workers=1, script=SERVER_PY)
        found = {}
        for name, folder in inputs.items():
            job = client.batch_endpoints.invoke(endpoint_name="warm", input=Input(type="uri_folder", path=str(folder)))
            assert wait_job(client, job.name, timeout=180).status == "Completed"
            saved = [Path(p) for p in client.jobs.download(job.name, download_path=tmp_path / f"out-{name}",
                                                           output_name="score")]
            [predictions] = [p for p in saved if p.name == "predictions.csv"]
            rows = dict(line.split(" ") for line in predictions.read_text().splitlines())
            bi = {p.name: p.read_text() for p in saved if p.name.startswith("bi-")}
            found[name] = (job.name, rows, bi)
        (_, rows_one, bi_one), (second, rows_two, bi_two) = found["one"], found["two"]
        assert sorted(rows_two) == ["two-0.csv", "two-1.csv", "two-2.csv"]
        assert set(rows_two.values()) == set(rows_one.values()), "the second job was not served by the warm worker"
        assert sorted(bi_one) == ["bi-one-0.csv", "bi-one-1.csv", "bi-one-2.csv"]
        assert sorted(bi_two) == ["bi-two-0.csv", "bi-two-1.csv", "bi-two-2.csv"]
        assert "ready: warm" in (home / "jobs" / second / "logs" / "worker-0.log").read_text()
    finally:
        client.close()
        stop_server(server)
    assert not list((home / "warm").glob("*/")), "the server's stop left warm workers' folders"


READ_PY = '''
import os


def init():
    pass


def run(mini_batch):
    return [os.path.basename(p) + "," + open(p).read().strip().replace("\\n", " ") for p in mini_batch]
'''


def test_a_store_folder_swapped_for_a_link_out_of_the_store_mid_job_fails_its_mini_batch(tmp_path: Path) -> None:
    """The server links a warm worker's inputs; a folder of the store swapped for a symbolic link to
    a folder outside it between two mini-batches (its real path already remembered) must not make
    the server link the outside file into the worker: that mini-batch fails, saying why."""
    s = Setup(tmp_path)
    (s.code / "score.py").write_text(READ_PY)
    data = s.data("d", [])
    (data / "a").mkdir()
    (data / "a" / "f.csv").write_text("store file")
    (data / "a" / "g.csv").write_text("store file too")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "g.csv").write_text("server secret")
    job = s.job("swapped", data)

    def batches():
        yield MiniBatch(0, (FileRef("input", "a/f.csv"),))
        # asked for the next one: mini-batch 0 was handed out; its file is linked (by the worker's link
        # helper, storage/local_links.py) before the worker is given it
        deadline = time.monotonic() + 60
        while not list(_warm_root(job).glob("*/in/input/a/f.csv")) and time.monotonic() < deadline:
            time.sleep(0.01)
        (data / "a").rename(tmp_path / "moved-away")
        (data / "a").symlink_to(outside)
        yield MiniBatch(1, (FileRef("input", "a/g.csv"),))

    outcomes: list = []
    LocalPoolEngine().run(job, batches(), outcomes.append, threading.Event())
    by_index = {o.batch.index: o for o in outcomes}
    assert by_index[0].error is None, by_index[0].error
    error = by_index[1].error
    assert error is not None, "the mini-batch whose folder became a link out of the store was scored"
    assert "outside the data store" in error["message"] and "a/g.csv" in error["message"], error
    rows = "".join(p.read_text() for p in Path(job.parts_dir).iterdir())
    assert "store file" in rows and "server secret" not in rows, rows


def _link_helpers() -> list[int]:
    """This process's children that run a warm worker's link helper (``storage/local_links.py``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"local_links.py" in cmdline:
            found.append(int(entry))
    return found


def test_a_warm_workers_files_go_through_its_link_helper_and_a_killed_helper_costs_a_retry_only(
        tmp_path: Path) -> None:
    """A warm worker's mini-batches are linked by its link helper, a process of its own. A helper
    killed mid-job may take frames with it: its worker is stopped, its mini-batches go to a fresh
    worker (a retry), and the job completes with every file scored once."""
    s = Setup(tmp_path)
    files = [f"f{i}.csv" for i in range(8)]
    data = s.data("d", files)
    job = dataclasses.replace(s.job("helper", data), policy=RetryPolicy(2, 60.0, -1))
    killed: list[int] = []

    def batches():
        for i, name in enumerate(files):
            yield MiniBatch(i, (FileRef("input", name),))
            if i == 2:
                helpers = _link_helpers()
                assert helpers, "no link helper runs beside the warm worker"
                for pid in helpers:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(helpers)

    outcomes: list = []
    LocalPoolEngine().run(job, batches(), outcomes.append, threading.Event())
    assert killed
    final = {o.batch.index: o for o in outcomes}
    assert sorted(final) == list(range(len(files)))
    assert all(o.error is None for o in final.values()), [o.error for o in final.values() if o.error]
    rows = _rows(job)
    assert sorted(rows) == files, rows
    assert s.inits() == 2, "the worker whose link helper died was not replaced by a fresh one"
    assert not set(_link_helpers()) & set(killed)
    [parked] = POOL.parked  # the fresh worker, parked with a helper of its own
    assert parked.linker is not None and parked.linker.pid not in killed and parked.linker.poll() is None
