"""Fixtures of the Ray tests: the Ray cluster (a head and a second worker node) that
``scripts/test.sh`` starts inside its loopback-only network namespace (``scripts/components.sh``).

``BATCHPOINT_TEST_RAY_ADDRESS`` (the head's GCS address), ``BATCHPOINT_TEST_RAY_TOKEN_FILE`` (the
cluster's auth token) and ``BATCHPOINT_TEST_RAY_NODE_PIDFILE`` (the PID of the worker node's
``ray start --block``) say where it is. Without them the tests fail, or skip with
``BATCHPOINT_TEST_ALLOW_MISSING_COMPONENTS=1``, like those of the other components.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, component_env

RAY_WHAT = "the Ray cluster (a head and a worker node in scripts/test.sh's loopback-only network namespace)"


@pytest.fixture(scope="session")
def ray_address() -> str:
    return component_env("BATCHPOINT_TEST_RAY_ADDRESS", RAY_WHAT)


@pytest.fixture(scope="session")
def ray_token(ray_address: str) -> str:
    return Path(component_env("BATCHPOINT_TEST_RAY_TOKEN_FILE", RAY_WHAT)).read_text().strip()


@pytest.fixture(scope="session")
def ray_driver(ray_address: str, ray_token: str) -> str:
    """This test process connected to the cluster as a driver (for Ray's state API)."""
    from batchpoint.engines.ray_engine import connect

    connect(ray_address, ray_token)
    return ray_address


#: the Azurite container of the Ray jobs' output data store (``out_container``)
OUT_CONTAINER = "ray-out"


@pytest.fixture(scope="session")
def heart_pickle_dir(heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's heart classifier as a plain pickle (a custom model: it names no environment of
    its own, so its jobs run in the server's, wherever they run; no MLflow import in the actors)."""
    import mlflow.sklearn

    folder = tmp_path_factory.mktemp("heart-pickle")
    with open(folder / "model.pkl", "wb") as f:
        pickle.dump(mlflow.sklearn.load_model(str(heart_model_dir)), f)
    return folder


@pytest.fixture(scope="session")
def out_container(azurite_connection_string: str) -> Any:
    """The Azurite container that :func:`register_out_store` data stores write into (a ContainerClient)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        service.create_container(OUT_CONTAINER)
    except Exception:  # noqa: BLE001 - there already
        pass
    return service.get_container_client(OUT_CONTAINER)


def register_out_store(client: Any, blob_url: str, name: str = "rayout") -> str:
    """Data store ``name`` on Azurite's :data:`OUT_CONTAINER` (account key): a remote output store."""
    from batchpoint import Datastore

    client.datastores.create_or_update(Datastore(
        name=name, type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name=OUT_CONTAINER,
        blob_endpoint_url=blob_url, allow_private_network=True, credentials={"account_key": AZURITE_ACCOUNT_KEY}))
    return name


def blobs_under(container: Any, prefix: str) -> list[str]:
    return [b.name for b in container.list_blobs(name_starts_with=prefix)]


def _address() -> str:
    """The test cluster's address, named in every state API call (other Ray clusters on the machine,
    in other namespaces, are visible through /tmp/ray and would make "auto" ambiguous)."""
    return component_env("BATCHPOINT_TEST_RAY_ADDRESS", RAY_WHAT)


def alive_actors(states: tuple[str, ...] | None = None) -> list[dict]:
    """Batchpoint's worker actors as Ray's state API lists them: in ``states``, or not DEAD."""
    from ray.util.state import list_actors

    found = [a if isinstance(a, dict) else vars(a) for a in list_actors(address=_address(), limit=10_000)]
    return [a for a in found if a.get("class_name") == "RayWorker"
            and (a.get("state") in states if states else a.get("state") != "DEAD")]


def running_batches(node_id: str) -> int:
    """How many ``RayWorker.run`` calls (mini-batches) Ray's state API shows running on ``node_id``."""
    from ray.util.state import list_tasks

    found = [t if isinstance(t, dict) else vars(t) for t in list_tasks(
        address=_address(), filters=[("state", "=", "RUNNING"), ("node_id", "=", node_id)], limit=10_000)]
    return sum(1 for t in found if str(t.get("func_or_class_name") or t.get("name")).endswith("RayWorker.run"))


def worker_node_id() -> str:
    """The node id of the cluster's worker node (the one that is not the head)."""
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"]]
    assert len(nodes) == 1, f"expected one alive worker node, found {len(nodes)}"
    return nodes[0]["NodeID"]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def kill_worker_node() -> list[int]:
    """SIGKILL the worker node: its ``ray start --block`` process, its raylet and everything they
    started (the node's actors among them), by PID. Returns the PIDs killed."""
    pidfile = Path(component_env("BATCHPOINT_TEST_RAY_NODE_PIDFILE", RAY_WHAT))
    pids = descendants(int(pidfile.read_text().strip()))
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def restart_worker_node(address: str, timeout: float = 60.0) -> None:
    """Start a worker node again (as scripts/components.sh does) and wait until Ray lists it;
    its PID goes to the pidfile, so the test command stops it by PID."""
    import ray

    pidfile = Path(component_env("BATCHPOINT_TEST_RAY_NODE_PIDFILE", RAY_WHAT))
    args = (pidfile.parent / "ray-node.args").read_text().split()
    ray_exe = Path(os.environ.get("VIRTUAL_ENV") or Path(__import__("sys").executable).parent.parent) / "bin" / "ray"
    log = open(pidfile.parent / "ray-node.log", "ab")
    proc = subprocess.Popen([str(ray_exe), "start", f"--address={address}", *args], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for n in ray.nodes() if n["Alive"]) >= 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"the restarted Ray worker node did not join within {timeout}s")
