"""Shared fixtures: a real Batchpoint server process, the SDK and CLI pointed at it, and a heart
classifier trained in the test session.

``pytest_plugins`` loads the real-component fixtures (Azurite, moto, PostgreSQL) that
``scripts/test.sh`` starts; ``tests/`` has no ``__init__.py`` so ``fixtures`` is importable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest_plugins = ["fixtures.components", "fixtures.flows", "fixtures.custom_models"]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist sets COLUMNS=80 and LINES=24 in its workers; the servers, CLIs and uv the tests
    # start would wrap their messages at 80 columns, unlike under a plain pytest run
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

#: The heart data the repository ships (examples/heart): a fresh clone runs the tests with nothing beside it.
HEART_DIR = Path(__file__).resolve().parents[1] / "examples" / "heart"
HEART_UNLABELED = HEART_DIR / "data"
HEART_TRAIN = HEART_DIR / "train" / "heart.csv"
HEART_ROWS = 303


#: Secret values tests create (keys, SAS tokens, API keys); stop_server scans each server's files for them.
RECORDED_SECRETS: set[str] = set()


def record_secret(value: str) -> str:
    RECORDED_SECRETS.add(value)
    return value


@dataclass
class ServerHandle:
    url: str
    home: Path
    proc: subprocess.Popen
    env: dict[str, str]

    def auth_headers(self) -> dict[str, str]:
        """Headers for raw REST calls as the workspace owner (the key the server made on first start)."""
        key = self.home / "owner.key"
        return {"Authorization": f"Bearer {key.read_text().strip()}"} if key.exists() else {}

    def rest(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth_headers(), timeout=60)

    def log(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_server(home: Path, extra_env: dict[str, str] | None = None, timeout: float = 60.0) -> ServerHandle:
    home.mkdir(parents=True, exist_ok=True)
    # workers unfenced unless asked (BATCHPOINT_WORKERS__ISOLATION=bwrap, or extra_env): many tests' scripts
    # report to the test through host folders and their pids, which a fenced worker cannot reach
    # (tests/engines/test_worker_isolation.py runs fenced servers; engine-level tests are fenced by default)
    isolation = os.environ.get("BATCHPOINT_WORKERS__ISOLATION", "none")
    env = {**os.environ, "BATCHPOINT_HOME": str(home), "BATCHPOINT_WORKERS__ISOLATION": isolation, **(extra_env or {})}
    env.pop("BATCHPOINT_SERVER_URL", None)
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "batchpoint.server", "--home", str(home)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    info = home / "server.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{(home / 'server.log').read_text()[-3000:]}")
        if info.exists():
            try:
                url = json.loads(info.read_text())["url"]
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return ServerHandle(url, home, proc, env)
            except (ValueError, KeyError, httpx.HTTPError):
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not become healthy in {timeout}s:\n{(home / 'server.log').read_text()[-3000:]}")


def stop_server(handle: ServerHandle, scan: bool = True) -> None:
    """Stop the server, then scan every file it wrote under its home for secrets
    (``fixtures/secret_scan.py``): a leak fails the test or fixture that owned the server."""
    if handle.proc.poll() is None:
        handle.proc.terminate()
        try:
            handle.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait(timeout=10)
    if scan:
        from fixtures.components import AZURITE_ACCOUNT_KEY
        from fixtures.secret_scan import leaks_in

        leaks = leaks_in(handle.home, {AZURITE_ACCOUNT_KEY, *RECORDED_SECRETS})
        assert not leaks, f"secrets in files the server at {handle.home} wrote:\n" + "\n".join(leaks)


#: the Ray cluster's tests: one unit of work for pytest-xdist (below)
RAY_FILES = "tests/engines/ray_cluster/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist (``scripts/test.sh`` runs ``-n 2``): a test file runs whole in one process
    (its module fixtures set up once, its fixed container and bucket names used by one process at a
    time), and all Ray files in one process, one after another: they share the one test cluster and
    count its CPUs and actors. (xdist's own ``loadgroup`` marks do not reach its scheduler under
    pytest 9, which keeps node ids in ``_id``.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return RAY_FILES if path.startswith(RAY_FILES) else path

    return FileScheduling(config, log)


INDEX_DIR = Path(__file__).resolve().parents[1] / ".cache" / "env-index"
UV_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "uv"


@pytest.fixture(scope="session")
def local_index() -> Iterator[Any]:
    """The local package index on 127.0.0.1 that deployment environments are built from (tests have
    no internet): the wheels ``scripts/test.sh`` fetched into ``.cache/env-index``."""
    from fixtures.local_index import LocalIndex, stable_port

    if not (INDEX_DIR / "index.json").is_file():
        if os.environ.get("BATCHPOINT_TEST_ALLOW_MISSING_COMPONENTS"):
            pytest.skip("the local package index's wheels are not fetched (scripts/test.sh fetches them)")
        pytest.fail(f"{INDEX_DIR}/index.json is missing: run scripts/test.sh, which fetches the wheels the "
                    "environment tests serve (tests/fixtures/local_index_fetch.py)")
    # one index per pytest-xdist worker (gw0, gw1, ...), each on its own stable port
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    index = LocalIndex(INDEX_DIR, stable_port(INDEX_DIR) + worker).start()
    yield index
    index.close()


def index_env(index: Any) -> dict[str, str]:
    """A server's settings for building environments from the local index, with uv's warm cache."""
    return {"BATCHPOINT_ENVIRONMENTS__INDEX_URL": index.url, "BATCHPOINT_ENVIRONMENTS__UV_CACHE_DIR": str(UV_CACHE)}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerHandle]:
    """One real server (uvicorn, SQLite, local data store) shared by the session; deployment
    environments are built from the local package index when its wheels are there."""
    env = index_env(request.getfixturevalue("local_index")) if (INDEX_DIR / "index.json").is_file() else {}
    # parked Ray actors of this server's jobs hold the shared test cluster's CPUs until they idle out:
    # 30 s, not the default 300 s, so the private servers of later Ray tests find the CPUs free
    env["BATCHPOINT_WORKERS__WARM_IDLE_S"] = "30"
    handle = start_server(tmp_path_factory.mktemp("bp-home"), env)
    yield handle
    stop_server(handle)


@pytest.fixture(scope="session")
def ml_client(server: ServerHandle):
    from batchpoint import MLClient

    client = MLClient(endpoint=server.url, home=server.home)
    yield client
    client.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def cli(server: ServerHandle):
    """Run the real ``batchpoint`` console script against the session server."""

    def run(*args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120) -> CliResult:
        exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
        env = {**server.env, "BATCHPOINT_SERVER_URL": server.url}
        proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"batchpoint {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
        return result

    return run


@pytest.fixture(scope="session")
def cli_inproc(server: ServerHandle):
    """``cli``'s twin for refusal and message checks: the same ``batchpoint`` command against the
    session server, run in this process (``fixtures/inproc_cli.py``: ``cli.main.main`` with the
    call's environment, working directory and stdin) instead of a new Python process."""
    from fixtures.inproc_cli import cli_on

    return cli_on(server)


@pytest.fixture(scope="session")
def heart_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow scikit-learn model trained on examples/heart/train/heart.csv."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.read_csv(HEART_TRAIN)
    features, target = frame.drop(columns=["target"]), frame["target"]
    prep = ColumnTransformer([("thal", OneHotEncoder(handle_unknown="ignore"), ["thal"])], remainder="passthrough")
    model = Pipeline([("prep", prep), ("clf", GradientBoostingClassifier(random_state=0))]).fit(features, target)
    path = tmp_path_factory.mktemp("model") / "heart-classifier"
    mlflow.sklearn.save_model(model, str(path), serialization_format="cloudpickle")
    return path


def deploy_heart(client, endpoint: str, model_dir: Path, **deployment) -> None:
    """Register the heart MLflow model from ``model_dir``, create ``endpoint`` and its default
    deployment ``mlflow`` (deployment fields as keyword arguments: mini_batch_size=..., compute=...)."""
    from batchpoint import BatchDeployment, BatchEndpoint, Model

    client.models.create_or_update(Model(name="heart-classifier", path=str(model_dir), type="mlflow_model"))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="mlflow", endpoint_name=endpoint, model="azureml:heart-classifier@latest", **deployment),
        set_default=True).result()


def expected_predictions(model_dir: Path, folder: Path = HEART_UNLABELED):
    """The model's own predict on every unlabeled file: {(file, row): prediction}."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir))
    out = {}
    for csv in sorted(folder.glob("*.csv")):
        for row, pred in enumerate(model.predict(pd.read_csv(csv))):
            out[(csv.name, row)] = int(pred)
    return out


def wait_job(client, name: str, timeout: float = 120.0):
    return client.jobs.wait(name, timeout=timeout, poll=0.1)
