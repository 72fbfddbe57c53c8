"""Issue 18 §1, issue 19 §4, issue 21 §4: the wall between uploaded scoring code and the server.

A hostile scoring script in the shape of Azure's samples (``init()`` / ``run(mini_batch)`` returning
a DataFrame) looks for the server's secrets the way the probe of issue 18 did: the known files of
the server's home (``owner.key``, ``server.key``, ``metadata.db``), other jobs' folders, the links
of ``/proc/self/fd`` (and every folder above their targets), ``/proc/*/environ`` and
``/proc/<server pid>/environ``, ``BATCHPOINT_*`` and a canary value in its own environment, and
whether it runs as root. It writes what it found into its output rows; the job scores normally.

* On a server with the default isolation (bubblewrap) it finds NOTHING.
* The same script on a server with the operator's opt-out (``workers.isolation: none``) finds the
  Owner's key, the server key and the canary: the probe works, so "nothing" above means something.

Engine-level tests (no server): processes a scoring script starts — plain and in new sessions —
end with the worker, after a normal end, a cancel and a worker the engine kills; a worker where
bubblewrap does not work is refused with a message that names what to install and the opt-out;
the opt-out runs and says so in the log; ``mlflow.log_param`` in ``run()`` never writes ``mlruns/``
into the server's working directory, fenced or not.
"""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
import threading
import time
from pathlib import Path

import pytest

from batchpoint import MLClient
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.engines.sandbox import check
from batchpoint.exceptions import PlatformError
from batchpoint.storage.base import StorageSpec
from conftest import HEART_UNLABELED, start_server, stop_server, wait_job
from fixtures.faults import make_endpoint

pytestmark = pytest.mark.skipif(check() is not None, reason=f"bubblewrap does not work here: {check()}")

CANARY = "bp-canary-7f3a9c1e5d"

HOSTILE_PY = r'''
import os
from pathlib import Path

import pandas

found = []


def _try_read(path):
    try:
        with open(path, "rb") as f:
            data = f.read(64)
        found.append(f"read:{path}:{len(data)}b")
    except OSError:
        pass


def _try_list(path, allowed=()):
    try:
        names = [n for n in os.listdir(path) if n not in allowed]
    except OSError:
        return
    if names:
        found.append(f"listed:{path}:{','.join(sorted(names))[:120]}")


def probe():
    home = Path(os.environ["PROBE_HOME"])
    for name in ("owner.key", "server.key", "metadata.db", "server.json", "server.log"):
        _try_read(home / name)
    # "warm": the mount point of a warm worker's own exchange folder (engines/warm.py), nothing else
    _try_list(home, allowed=("jobs", "models", "code", "datastores", "environments", "warm"))
    _try_list(home / "warm", allowed=(os.path.basename(os.path.dirname(os.getcwd())),))
    own_job = os.getcwd().split("/jobs/")[1].split("/")[0] if "/jobs/" in os.getcwd() else ""
    _try_list(home / "jobs", allowed=(own_job,))
    other = home / "jobs" / os.environ["OTHER_JOB"]
    _try_list(other)
    _try_list(other / "parts")
    # every fd's target, and every folder above it: the way the probe of issue 18 found the home
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("/"):
            continue
        for folder in Path(target).parents:
            for name in ("owner.key", "server.key", "metadata.db"):
                _try_read(folder / name)
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            data = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if b"BATCHPOINT_" in data or b"__CANARY__" in data:
            found.append(f"environ-of-pid:{pid}")
    _try_read(f"/proc/{os.environ['SERVER_PID']}/environ")
    for key, value in os.environ.items():
        if key.startswith("BATCHPOINT_") or value == "__CANARY__":
            found.append(f"own-environment:{key}")
    if os.getuid() == 0 or os.geteuid() == 0:
        found.append("runs-as-root")
    return sorted(set(found))


def init():
    global found_at_init
    found_at_init = probe()


def run(mini_batch):
    found_now = set(found_at_init) | set(probe())
    if "/LocalUpload/" in mini_batch[0]:  # other principals' uploads beside the job's input
        uploads, rest = mini_batch[0].split("/LocalUpload/", 1)
        try:
            others = [n for n in os.listdir(uploads + "/LocalUpload") if n != rest.split("/", 1)[0]]
        except OSError:
            others = []
        if others:
            found_now.add("other-uploads:" + ",".join(sorted(others)))
    text = "|".join(sorted(found_now)).replace(" ", "_") or "nothing"
    return pandas.DataFrame({"file": [os.path.basename(p) for p in mini_batch], "found": [text] * len(mini_batch)})
'''.replace("__CANARY__", CANARY)


BENIGN_PY = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return list(mini_batch)\n"


def _findings(client: MLClient, job_name: str, tmp: Path) -> dict[str, str]:
    saved = client.jobs.download(job_name, download_path=tmp, output_name="score")
    [predictions] = [Path(p) for p in saved if Path(p).name == "predictions.csv"]
    rows = {}
    for line in predictions.read_text().splitlines():
        name, _, found = line.partition(" ")
        rows[name] = found
    return rows


def _probe_run(tmp_path: Path, heart_model_dir: Path, isolation: str) -> tuple[dict[str, str], Path]:
    home = tmp_path / f"home-{isolation}"
    server = start_server(home, {"BATCHPOINT_WORKERS__ISOLATION": isolation, "BATCHPOINT_PROBE_CANARY": CANARY})
    client = MLClient(endpoint=server.url, home=server.home)
    try:
        make_endpoint(client, "probe", heart_model_dir, tmp_path / f"code-{isolation}", workers=2,
                      script=BENIGN_PY, mini_batch_size=2)
        first = client.batch_endpoints.invoke(endpoint_name="probe", input=_input()).name
        assert wait_job(client, first, timeout=180).status in ("Completed", "Failed")
        make_endpoint(client, "hostile", heart_model_dir, tmp_path / f"hostile-{isolation}", workers=2,
                      script=HOSTILE_PY, mini_batch_size=2)
        job = client.batch_endpoints.invoke(
            endpoint_name="hostile", input=_input(),
            environment_variables={"PROBE_HOME": str(home), "OTHER_JOB": first, "SERVER_PID": str(server.proc.pid)})
        done = wait_job(client, job.name, timeout=180)
        assert done.status == "Completed", done
        return _findings(client, job.name, tmp_path / f"out-{isolation}"), home
    finally:
        client.close()
        stop_server(server)


def _input():
    from batchpoint import Input

    return Input(type="uri_folder", path=str(HEART_UNLABELED))


def test_a_hostile_script_finds_nothing_of_the_server_in_its_sandbox(tmp_path: Path, heart_model_dir: Path) -> None:
    found, home = _probe_run(tmp_path, heart_model_dir, "bwrap")
    inputs = sorted(p.name for p in HEART_UNLABELED.glob("*.csv"))
    assert sorted(found) == inputs  # every file scored, once
    assert set(found.values()) == {"nothing"}, found
    # secrets at rest: the data-store key and the Owner's key are the server user's alone
    for name in ("server.key", "owner.key"):
        st = (home / name).stat()
        assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid(), (name, oct(st.st_mode))


def test_the_probe_finds_the_secrets_of_an_unfenced_server(tmp_path: Path, heart_model_dir: Path) -> None:
    """The control: with the opt-out the same script reads the Owner's key and the server key, and
    sees the canary of the server's environment (so "nothing" in the sandbox is the fence's doing)."""
    found, home = _probe_run(tmp_path, heart_model_dir, "none")
    text = " ".join(found.values())
    assert f"read:{home}/owner.key" in text and f"read:{home}/server.key" in text, found
    assert "own-environment:BATCHPOINT_PROBE_CANARY" in text or "environ-of-pid" in text, found
    assert "other-uploads:" in text, found  # the code and model uploads beside the input


# --- engine level: the processes a script starts, refusal and opt-out, the working directory

CHILDREN_PY = r'''
import os
import subprocess
import sys
import time

LOOP = "import sys, time\nwhile True:\n    open(sys.argv[1], 'a').write('x')\n    time.sleep(0.05)\n"


def init():
    pass


def run(mini_batch):
    out = os.path.join(os.environ["SHARED"], f"children-{os.getpid()}-{time.monotonic_ns()}")
    for new_session in (False, False, False, True, True, True):
        subprocess.Popen([sys.executable, "-c", LOOP, out], start_new_session=new_session,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while (not os.path.exists(out) or os.path.getsize(out) < 6) and time.time() < deadline:
        time.sleep(0.05)
    if os.environ.get("THEN_SLEEP"):
        time.sleep(float(os.environ["THEN_SLEEP"]))
    return [f"{os.path.basename(p)},1" for p in mini_batch]
'''


def _engine_job(tmp_path: Path, script: str, *, shared: Path | None = None, timeout_s: float = 60.0,
                isolation: dict | None = None, **environment: str) -> EngineJob:
    code, data, job = tmp_path / "code", tmp_path / "data", tmp_path / "job"
    for folder in (code, data, job / "parts", job / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    (code / "score.py").write_text(textwrap.dedent(script).lstrip())
    (data / "a.csv").write_text("a\n1\n")
    env = dict(environment)
    options = dict(isolation or {})
    if shared is not None:
        shared.mkdir(exist_ok=True)
        shared.chmod(0o777)
        env["SHARED"] = str(shared)
        options["shared"] = [str(shared)]
    return EngineJob(name=f"iso-{tmp_path.name}", workers=1,
                     scorer={"code_dir": str(code), "scoring_script": "score.py", "model_dir": None},
                     sources={"input": StorageSpec("local", {"path": str(data)}, None)},
                     policy=RetryPolicy(0, timeout_s, -1), parts_dir=str(job / "parts"), logs_dir=str(job / "logs"),
                     environment=env, isolation=options)


def _growing(shared: Path, within: float = 10.0) -> list[str]:
    """The children's files that still grow over 1 s, asked again until none does or ``within``
    seconds pass: once bwrap is gone the kernel ends the rest of the sandbox's pid namespace on its
    own time (a busy machine took over a second), but a child that outlives it keeps growing."""
    files = sorted(shared.glob("children-*"))
    assert files, "the script started no children"
    deadline = time.monotonic() + within
    while True:
        before = {f: f.stat().st_size for f in files}
        time.sleep(1.0)
        growing = [f.name for f in files if f.stat().st_size != before[f]]
        if not growing or time.monotonic() > deadline:
            return growing


def _run(job: EngineJob, stop: threading.Event | None = None) -> list:
    outcomes: list = []
    LocalPoolEngine().run(job, iter([MiniBatch(0, (FileRef("input", "a.csv"),))]), outcomes.append,
                          stop or threading.Event())
    return outcomes


def test_processes_a_script_starts_end_with_its_worker_after_a_normal_end(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    outcomes = _run(_engine_job(tmp_path, CHILDREN_PY, shared=shared))
    assert [o.ok for o in outcomes] == [True], outcomes[0].error if outcomes else None
    assert _growing(shared) == []


def test_processes_a_script_starts_end_when_the_engine_kills_its_worker(tmp_path: Path) -> None:
    """The mini-batch's timeout: the engine kills the worker (SIGKILL to its sandbox)."""
    shared = tmp_path / "shared"
    outcomes = _run(_engine_job(tmp_path, CHILDREN_PY, shared=shared, timeout_s=4, THEN_SLEEP="60"))
    assert outcomes and outcomes[0].error["kind"] == "timeout", outcomes
    assert _growing(shared) == []


def test_processes_a_script_starts_end_when_the_job_is_canceled(tmp_path: Path) -> None:
    shared, stop = tmp_path / "shared", threading.Event()
    job = _engine_job(tmp_path, CHILDREN_PY, shared=shared, THEN_SLEEP="60")
    runner = threading.Thread(target=_run, args=(job, stop))
    runner.start()
    deadline = time.monotonic() + 60
    while not any(f.stat().st_size > 6 for f in shared.glob("children-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()  # what a cancel does to the engine
    runner.join(30)
    assert not runner.is_alive()
    assert _growing(shared) == []


def test_workers_are_refused_where_bubblewrap_does_not_work(tmp_path: Path) -> None:
    job = _engine_job(tmp_path, CHILDREN_PY, isolation={"bwrap": str(tmp_path / "no-such-bwrap")})
    with pytest.raises(PlatformError) as err:
        _run(job)
    text = str(err.value)
    assert "bubblewrap" in text and "apt-get install bubblewrap" in text, text
    assert "BATCHPOINT_WORKERS__ISOLATION=none" in text, text


MLFLOW_PY = r'''
import os

import mlflow


def init():
    pass


def run(mini_batch):
    mlflow.log_param("files", len(mini_batch))
    open("relative.txt", "w").write("written by the script")
    return [f"{os.path.basename(p)},{os.getcwd()}" for p in mini_batch]
'''


@pytest.mark.parametrize("mode", ["bwrap", "bwrap-uid", "none"])
def test_mlflow_and_relative_paths_stay_in_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture, mode: str) -> None:
    """Issue 21 §4: a script's ``mlflow.log_param`` wrote ``mlruns/`` into the server's working
    directory. Workers work in their own folder of the job's scratch, with a tracking URI there.
    With the opt-out (``none``) the job runs unfenced and the log says so."""
    cwd = tmp_path / "server-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    caplog.set_level(logging.WARNING, logger="batchpoint.engines.local_pool")
    if mode == "bwrap-uid" and os.geteuid() != 0:
        pytest.skip("workers.run_as uid needs a server running as root")
    isolation = {"mode": "bwrap", "run_as": "uid"} if mode == "bwrap-uid" else {"mode": mode}
    outcomes = _run(_engine_job(tmp_path, MLFLOW_PY, isolation=isolation))
    assert [o.ok for o in outcomes] == [True], outcomes[0].error
    assert list(cwd.iterdir()) == []  # no mlruns/, no relative.txt
    part = next((tmp_path / "job" / "parts").glob("*.csv")).read_text()
    assert "/job/tmp/worker-0/work" in part, part
    if mode == "bwrap-uid":  # a real other user wrote the part (its folders were given to workers.uid)
        assert next((tmp_path / "job" / "parts").glob("*.csv")).stat().st_uid == 65534
    unfenced = [r.getMessage() for r in caplog.records if "UNFENCED" in r.getMessage()]
    assert bool(unfenced) == (mode == "none"), unfenced
    assert shutil.which("bwrap")


MASK_PY = r'''
import os


def init():
    pass


def run(mini_batch):
    home = os.environ["PROBE_HOME"]
    try:
        found = open(os.path.join(home, "owner.key")).read().strip()
    except OSError:
        found = "unreadable"
    rows = [open(p).read().count("\n") for p in mini_batch]  # the input, beside the home, is read
    return [f"{os.path.basename(p)},{n},{found},{'+'.join(sorted(os.listdir(home)))}" for p, n in zip(mini_batch, rows)]
'''


def test_a_local_store_holding_the_servers_home_shows_the_store_not_the_home(tmp_path: Path) -> None:
    """A ``local`` data store on a parent of the server's home (the bench's layout): the worker
    reads its input there, and finds an empty home holding only the job's own folders."""
    store = tmp_path / "store"
    home = store / "home"
    (store / "data").mkdir(parents=True)
    (store / "data" / "a.csv").write_text("a\n1\n2\n")
    home.mkdir()
    (home / "owner.key").write_text("bpk_secret_of_the_owner\n")
    (home / "code").mkdir()
    (home / "code" / "score.py").write_text(textwrap.dedent(MASK_PY).lstrip())
    job_dir = home / "jobs" / "j1"
    for folder in (job_dir / "parts", job_dir / "logs"):
        folder.mkdir(parents=True)
    job = EngineJob(name="mask", workers=1,
                    scorer={"code_dir": str(home / "code"), "scoring_script": "score.py", "model_dir": None},
                    sources={"input": StorageSpec("local", {"path": str(store)}, None)},
                    policy=RetryPolicy(0, 60, -1), parts_dir=str(job_dir / "parts"), logs_dir=str(job_dir / "logs"),
                    environment={"PROBE_HOME": str(home)}, isolation={"home": str(home)})
    outcomes: list = []
    LocalPoolEngine().run(job, iter([MiniBatch(0, (FileRef("input", "data/a.csv"),))]), outcomes.append,
                          threading.Event())
    assert [o.ok for o in outcomes] == [True], outcomes[0].error
    part = next((job_dir / "parts").glob("*.csv")).read_text()
    assert part.strip() == "a.csv,3,unreadable,code+jobs", part


def test_the_server_says_at_start_how_scoring_code_is_fenced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Start-up (``local_pool.warm_up``): an error naming what to install when bubblewrap does not
    work, a warning for the opt-out, never silence."""
    from batchpoint.engines.local_pool import warm_up

    caplog.set_level(logging.INFO, logger="batchpoint.engines.local_pool")
    warm_up({"mode": "bwrap", "bwrap": str(tmp_path / "no-such-bwrap")})
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "apt-get install bubblewrap" in errors[0] and "BATCHPOINT_WORKERS__ISOLATION=none" in errors[0]
    caplog.clear()
    warm_up({"mode": "bwrap"})
    assert any("fenced" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    caplog.clear()
    warm_up({"mode": "none"})
    assert any("UNFENCED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
