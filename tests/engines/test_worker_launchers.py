"""Workers in another interpreter: ``python -m batchpoint.worker`` imports only the worker side,
the subprocess launcher gives the same outcomes as the forkserver path, and a worker speaking
another protocol version is refused with an error that names both versions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batchpoint.engines.launchers import ForkserverLauncher, SubprocessLauncher
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.exceptions import PlatformError
from batchpoint.storage.base import StorageSpec
from batchpoint.worker.protocol import PROTOCOL_VERSION, ProtocolError
from fixtures.parts import outcome_text

pytestmark = pytest.mark.timeout(120)

SCRIPT = '''
import json
import os
import sys

from batchpoint.worker import server_side_modules


def _report(stage):
    path = os.path.join(os.environ["REPORT_DIR"], f"{stage}-{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump(server_side_modules(list(sys.modules)), out)


def init():
    _report("init")


def run(mini_batch):
    _report("run")
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == "bad.txt":
            raise ValueError("cannot score bad.txt")
        rows.append(f"{name},{open(path).read().strip()}")  # a list element is written as its text
    return rows
'''


def test_worker_entry_point_imports_no_server_side_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "batchpoint.worker", "--selfcheck"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["server_side_modules"] == [] and report["protocol_version"] == 2


def _job(tmp_path: Path, name: str) -> tuple[EngineJob, list[MiniBatch]]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(5):
        (data / f"f{i}.txt").write_text(f"value-{i}")
    (data / "bad.txt").write_text("x")
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "score.py").write_text(SCRIPT)
    reports = tmp_path / f"reports-{name}"
    reports.mkdir()
    job = EngineJob(name=name, workers=2, scorer={"code_dir": str(tmp_path / "code"), "scoring_script": "score.py"},
                    sources={"in": StorageSpec("local", {"path": str(data)})}, policy=RetryPolicy(0, 30, -1),
                    parts_dir=str(tmp_path / name / "parts"), logs_dir=str(tmp_path / name / "logs"),
                    environment={"REPORT_DIR": str(reports)})
    files = [FileRef("in", f"f{i}.txt") for i in range(5)]
    batches = [MiniBatch(0, tuple(files[:2])), MiniBatch(1, (files[2], FileRef("in", "bad.txt"))),
               MiniBatch(2, (FileRef("in", "missing.txt"),)), MiniBatch(3, tuple(files[3:]))]
    return job, batches


def _run(launcher, tmp_path: Path, name: str) -> tuple[list[tuple], dict[str, str], list[list[str]]]:
    job, batches = _job(tmp_path, name)
    outcomes = []
    LocalPoolEngine(launcher).run(job, iter(batches), outcomes.append, threading.Event())
    summary = sorted((o.batch.key, o.rows, (o.error or {}).get("type"), (o.error or {}).get("kind"))
                     for o in outcomes)
    parts = {f"{o.batch.key}.csv": outcome_text(job.parts_dir, o) for o in outcomes if o.ok}  # each piece's rows
    assert not any(p.name.endswith(".tmp") for p in Path(job.parts_dir).iterdir())
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / f"reports-{name}").iterdir())]
    return summary, parts, reports


def test_subprocess_launcher_gives_the_same_outcomes_as_the_forkserver(tmp_path: Path) -> None:
    forked = _run(ForkserverLauncher(), tmp_path, "forked")
    spawned = _run(SubprocessLauncher(sys.executable), tmp_path, "spawned")
    summary, parts, reports = spawned
    assert summary == forked[0] and parts == forked[1]
    assert summary == [
        ("00000000-0000", 2, None, None),
        ("00000001-0001", 1, None, None),  # the failing mini-batch was split: f2 scored, bad.txt named
        ("00000001-0002", 0, "ValueError", "user"),
        ("00000002-0000", 0, "StorageNotFoundError", "input"),
        ("00000003-0000", 2, None, None),
    ], summary
    assert parts["00000000-0000.csv"] == "f0.txt,value-0\nf1.txt,value-1\n"
    assert not any(name.endswith(".tmp") for name in parts)
    # the subprocess's workers hold none of the server side, in init() or in run(); forked ones none of
    # Batchpoint's (their forkserver preloads MLflow, whose pyfunc module imports starlette/fastapi itself)
    assert reports and all(r == [] for r in reports), reports
    assert forked[2] and all(not [m for m in r if m.startswith("batchpoint.")] for r in forked[2]), forked[2]


def test_a_worker_of_another_protocol_version_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python-other-version"
    code = ("import json, sys; from multiprocessing.connection import Connection; c = Connection(int(sys.argv[-1])); "
            "c.recv_bytes(); c.send_bytes(json.dumps({'v': 99, 'type': 'ready', 'worker': 0, 'init_seconds': 0})"
            ".encode()); c.recv_bytes()")
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{code}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    job, batches = _job(tmp_path, "foreign")
    job.workers = 1
    with pytest.raises(ProtocolError) as raised:
        LocalPoolEngine(SubprocessLauncher(str(fake))).run(job, iter(batches), lambda o: None, threading.Event())
    message = str(raised.value)
    assert "version 99" in message and f"speaks version {PROTOCOL_VERSION}" in message and "slot 0" in message, message
    assert os.path.isdir(job.logs_dir)


def test_an_interpreter_that_cannot_start_fails_the_job_naming_it(tmp_path: Path) -> None:
    job, batches = _job(tmp_path, "missing-python")
    missing = str(tmp_path / "no-such-python")
    with pytest.raises(PlatformError, match=f"interpreter '{missing}'.*Batchpoint installed"):
        LocalPoolEngine(SubprocessLauncher(missing)).run(job, iter(batches), lambda o: None, threading.Event())


def test_the_sandbox_command_holds_the_job_and_nothing_of_the_server(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The bwrap command line of a fenced worker (``engines/sandbox.py``): its own namespaces, a clean
    environment without the server's ``BATCHPOINT_*`` settings, the job's folders bound (the code
    read-only), and the server's home only as an empty tmpfs when a bound store holds it."""
    from batchpoint.engines.sandbox import bwrap_command

    monkeypatch.setenv("BATCHPOINT_SECRET_SETTING", "do-not-pass")
    store, home = tmp_path / "store", tmp_path / "store" / "home"
    job_dir = home / "jobs" / "j"
    for folder in (store / "data", home / "code", job_dir / "parts", job_dir / "logs"):
        folder.mkdir(parents=True)
    (home / "owner.key").write_text("secret\n")
    job = EngineJob(name="j", workers=1, scorer={"code_dir": str(home / "code"), "scoring_script": "score.py"},
                    sources={"input": StorageSpec("local", {"path": str(store)}, None)}, policy=RetryPolicy(),
                    parts_dir=str(job_dir / "parts"), logs_dir=str(job_dir / "logs"),
                    environment={"AZUREML_BI_OUTPUT_PATH": str(job_dir / "outputs" / "score")},
                    isolation={"home": str(home)})
    argv, _ = bwrap_command(job, 0, sys.executable, 5)
    for flag in ("--unshare-pid", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv, flag
    assert "do-not-pass" not in argv and not any(a.startswith("BATCHPOINT_") for a in argv)
    pairs = list(zip(argv, argv[1:]))
    assert ("--ro-bind", str(home / "code")) in pairs and ("--ro-bind", str(store)) in pairs
    for writable in (job_dir / "parts", job_dir / "outputs" / "score", job_dir / "tmp" / "worker-0" / "work",
                     job_dir / "logs" / "worker-0.log"):
        assert ("--bind", str(writable)) in pairs, writable
    # the home is masked after the store that holds it, and the job's folders come after the mask
    mask = argv.index(str(home), argv.index("--tmpfs", argv.index(str(store))))
    assert argv[mask - 1] == "--tmpfs" and argv.index(str(job_dir / "parts")) > mask
    assert argv[-2:] == ["--fd", "5"]  # the worker serves the socket it inherits, nothing else


def test_a_local_input_store_shows_a_worker_only_the_inputs_folder(tmp_path: Path) -> None:
    """What of a local input store a fenced worker sees (``worker/sandbox.input_location``): the
    input's folder or file, the folder above a wildcard, the whole store when the path is unknown
    or would leave the store."""
    from batchpoint.worker.sandbox import input_location as _input_location

    store = tmp_path / "store"
    (store / "LocalUpload" / "abc" / "data").mkdir(parents=True)
    (store / "LocalUpload" / "abc" / "data" / "a.csv").write_text("a\n")
    assert _input_location(str(store), "LocalUpload/abc/data") == store / "LocalUpload" / "abc" / "data"
    assert _input_location(str(store), "LocalUpload/abc/data/a.csv") == store / "LocalUpload" / "abc" / "data" / "a.csv"
    assert _input_location(str(store), "LocalUpload/abc/data/*.csv") == store / "LocalUpload" / "abc" / "data"
    assert _input_location(str(store), "*.csv") == store
    assert _input_location(str(store), None) == store
    assert _input_location(str(store), "../..") == store
