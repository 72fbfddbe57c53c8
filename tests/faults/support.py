"""Shared by the fault tests: a heart scoring script that leaves traces a test can read, an endpoint
over it, and checks that a job's output holds every input row exactly once with the model's own
predictions, in the order a clean run writes them.

The script appends ``start <file> <pid>`` and ``scored <file> <pid>`` to ``$SIDE_EFFECTS`` (one line
each, so a test counts how often a file was scored) and touches ``$SIGNAL_DIR/<kind>-<pid>``
(``init``, ``run``, ``hang``) so a test knows which worker process is where. ``SLEEP_S`` sleeps per
file; ``HANG_ON`` (comma-separated file names) sleeps 120 s on those files unless
``$SIGNAL_DIR/released`` exists; ``FAIL_ON`` (comma-separated) raises on those files. :data:`FIXED_SCORE_PY` is the same script
after a fix: it drops rows whose first column is not a number.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Input, MLClient, Model
from conftest import HEART_UNLABELED, wait_job
from foundation.conftest import expected_rows, write_script

SCORE_PY = """
import os
import time

import mlflow.pyfunc
import pandas as pd

model = None
DROP_BAD_ROWS = False


def _mark(kind):
    open(os.path.join(os.environ["SIGNAL_DIR"], f"{kind}-{os.getpid()}"), "w").close()


def _trace(what, name):
    with open(os.environ["SIDE_EFFECTS"], "a") as out:
        out.write(f"{what} {name} {os.getpid()}\\n")


def init():
    global model
    root = os.environ["AZUREML_MODEL_DIR"]  # the model folder, or (Azure's layout) the folder holding it
    if not os.path.exists(os.path.join(root, "MLmodel")):
        root = next(os.path.join(root, d) for d in sorted(os.listdir(root))
                    if os.path.exists(os.path.join(root, d, "MLmodel")))
    model = mlflow.pyfunc.load_model(root)
    _mark("init")


def run(mini_batch):
    _mark("run")
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        _trace("start", name)
        if name in os.environ.get("HANG_ON", "").split(","):
            _mark("hang")
            for _ in range(1200):
                if os.path.exists(os.path.join(os.environ["SIGNAL_DIR"], "released")):
                    break
                time.sleep(0.1)
        if name in os.environ.get("FAIL_ON", "").split(","):
            raise ValueError(f"cannot score {name}: the rows are corrupt")
        time.sleep(float(os.environ.get("SLEEP_S", "0")))
        data = pd.read_csv(path)
        if DROP_BAD_ROWS:  # the fixed script of the rerun test: rows whose age is not a number are dropped
            data = data[pd.to_numeric(data.iloc[:, 0], errors="coerce").notna()].reset_index(drop=True)
            data[data.columns[0]] = data[data.columns[0]].astype(int)
        frames.append(pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file": name}))
        _trace("scored", name)
    return pd.concat(frames, ignore_index=True)
"""

FIXED_SCORE_PY = SCORE_PY.replace("DROP_BAD_ROWS = False", "DROP_BAD_ROWS = True")


def heart_copies(folder: Path, copies: int = 2) -> Path:
    """The heart files ``copies`` times (``a-heart-unlabeled-0.csv``, ``b-...``): 4 × copies files."""
    folder.mkdir(parents=True)
    for i in range(copies):
        for csv in sorted(HEART_UNLABELED.glob("*.csv")):
            shutil.copy(csv, folder / f"{chr(97 + i)}-{csv.name}")
    return folder


def make_endpoint(client: Any, endpoint: str, model_dir: Path, code_dir: Path, workers: int = 2,
                  script: str = SCORE_PY, **settings: Any) -> None:
    """Endpoint ``endpoint``, default deployment ``traced``: ``workers`` workers, one file per
    mini-batch, no retries of the user's code, error_threshold -1."""
    client.models.create_or_update(Model(name="faults-heart", type="mlflow_model", path=str(model_dir)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    spec = {"instance_count": 1, "max_concurrency_per_instance": workers, "mini_batch_size": 1, "error_threshold": -1,
            "retry_settings": {"max_retries": 0, "timeout": 150}, **settings}
    if "env_manager" in BatchDeployment.model_fields:  # the server's own environment: no build per test home
        spec.setdefault("env_manager", "local")
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="traced", endpoint_name=endpoint, model="azureml:faults-heart@latest",
        code_configuration=CodeConfiguration(code=str(write_script(code_dir, script)), scoring_script="score.py"),
        **spec), set_default=True).result()


def invoke(client: Any, endpoint: str, path: str | Path, traces: Path, **env: str) -> str:
    """Invoke with the trace locations under ``traces`` (signals/, side-effects.txt)."""
    (traces / "signals").mkdir(parents=True, exist_ok=True)
    variables = {"SIGNAL_DIR": str(traces / "signals"), "SIDE_EFFECTS": str(traces / "side-effects.txt"), **env}
    return client.batch_endpoints.invoke(endpoint_name=endpoint, input=Input(type="uri_folder", path=str(path)),
                                         environment_variables=variables).name


def pids(traces: Path, kind: str) -> set[int]:
    return {int(p.name.split("-", 1)[1]) for p in (traces / "signals").glob(f"{kind}-*")}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def traces_of(traces: Path, what: str) -> list[str]:
    """The file names of the ``what`` lines (start | scored), in order."""
    path = traces / "side-effects.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[1] for line in lines if line.split()[0] == what]


def download_predictions(client: Any, name: str, where: Path) -> Path:
    """Download job ``name``'s output folder; the predictions file in it (other files, such as an
    errors summary or a partial marker, may lie beside it)."""
    file_name = client.jobs.get(name).outputs["score"].file_name
    (found,) = [p for p in client.jobs.download(name, download_path=where) if p.name == file_name]
    return found


def read_output(path: Path) -> list[tuple[int, int, str]]:
    """(row, prediction, file) per line: a script's rows are space-separated (Azure's append_row),
    the MLflow scorer's comma-separated."""
    rows = []
    for line in path.read_text().splitlines():
        row, prediction, name = re.split(r"[ ,]", line, maxsplit=2)
        rows.append((int(row), int(prediction), name))
    return rows


def assert_clean_run_output(path: Path, model_dir: Path, folder: Path, only: set[str] | None = None) -> None:
    """``path`` holds exactly the rows a clean run writes: every row of every file once, the model's
    own prediction, files in listing order, rows ascending."""
    got = read_output(path)
    expected = [r for r in expected_rows(model_dir, folder) if only is None or r[2] in only]
    assert len(got) == len(set(got)), "a row appears twice in the output"
    assert got == expected, (len(got), len(expected))


def finish_job(server: Any, name: str, out: Path) -> tuple[Any, list[str], Path]:
    """Wait for job ``name`` on ``server`` (one started again after a kill) to end: the job, its
    status history and its downloaded predictions."""
    with MLClient(endpoint=server.url, home=server.home) as client:
        final = wait_job(client, name, timeout=120)
        history = [e.status for e in client.jobs.events(name) if e.type == "status"]
        return final, history, download_predictions(client, name, out)


def assert_resumed_without_rescoring(final: Any, history: list[str], saved: Path, server: Any, model_dir: Path,
                                     data: Path, traces: Path, done_before: list[int]) -> None:
    """A job resumed after its server was killed: Completed with ``Crashed`` in its history, the
    output of a clean run, and each file of the mini-batches finished before the kill (the done
    log's indexes ``done_before``; one file per mini-batch) started exactly once."""
    assert final.status == "Completed", (final.status_message, final.error, server.log()[-3000:])
    assert "Crashed" in history and history[-1] == "Completed" and "Failed" not in history, history
    assert_clean_run_output(saved, model_dir, data)
    files = sorted(p.name for p in data.iterdir())
    starts = Counter(traces_of(traces, "start"))
    assert all(starts[files[i]] == 1 for i in done_before), (done_before, starts)  # not scored again
    assert set(traces_of(traces, "scored")) == set(files)
