"""What an operator meets when a resource points at something that is not there (issue 23): a Ray
compute whose address no Ray head answers is refused when it is created, naming the address and
what to check; a second Ray cluster is refused at create (Ray allows one cluster per driver
process). In-process: FastAPI's TestClient over the real app and a real SQLite database."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
with warnings.catch_warnings():  # starlette asks for httpx2, which it works without
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from batchpoint.server.app import create_app
from batchpoint.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("operator-home")
    with TestClient(create_app(Settings(home=home))) as test_client:
        key = (home / "owner.key").read_text().strip()
        test_client.headers["Authorization"] = f"Bearer {key}"
        yield test_client


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture()
def grpc_port() -> Iterator[int]:
    """A gRPC server on loopback: answers HTTP/2 as a Ray head's GCS does."""
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def test_a_ray_compute_on_a_closed_port_is_refused_at_create(client: TestClient) -> None:
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    response = client.put("/computes/ray-typo", json={"type": "ray", "address": address})
    assert time.monotonic() - started < 10
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert address in message and "refused" in message and "ray start --head" in message, message
    assert client.get("/computes/ray-typo").status_code == 404  # nothing was saved


def test_a_ray_compute_on_a_web_server_is_refused_at_create(client: TestClient) -> None:
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{web.server_address[1]}"  # as if the dashboard's port were given
        response = client.put("/computes/ray-dashboard", json={"type": "ray", "address": address})
    finally:
        web.shutdown()
    assert response.status_code == 400, response.text
    assert "not as a Ray GCS" in response.text and address in response.text and "8265" in response.text


def test_a_second_ray_cluster_is_refused_at_create(client: TestClient, grpc_port: int) -> None:
    address = f"127.0.0.1:{grpc_port}"
    assert client.put("/computes/ray-one", json={"type": "ray", "address": address}).status_code == 200
    again = client.put("/computes/ray-one", json={"type": "ray", "address": address, "max_instances": 2})
    assert again.status_code == 200, again.text  # the same compute, updated
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        response = client.put("/computes/ray-two", json={"type": "ray", "address": f"127.0.0.1:{other.getsockname()[1]}"})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "ray-one" in message and address in message and "one Ray cluster" in message, message
    same = client.put("/computes/ray-two", json={"type": "ray", "address": address})
    assert same.status_code == 200, same.text  # a second compute on the same cluster is fine
    client.delete("/computes/ray-two")
    client.delete("/computes/ray-one")


def test_connecting_to_an_address_that_never_answers_is_bounded(grpc_port: int) -> None:
    """An address that answers HTTP/2 but is no Ray head: ``ray.init`` would wait; the engine's
    connect gives up after its timeout, in a child process, and leaves nothing pending here.
    Checked in a fresh interpreter: this test process may already drive the session's Ray cluster
    (tests/engines/ray_cluster), and a driver keeps its one cluster."""
    script = textwrap.dedent(f"""
        import time
        from batchpoint.engines import ray_engine
        from batchpoint.exceptions import PlatformError
        address = "127.0.0.1:{grpc_port}"
        started = time.monotonic()
        try:
            ray_engine.connect(address, None, timeout_s=3)
        except PlatformError as e:
            print("FIRST", e)
        print("SECONDS", time.monotonic() - started)
        print("STATE", ray_engine._attempt is None and ray_engine._connected is None)
        try:
            ray_engine.connect("127.0.0.1:{closed_port()}", None, timeout_s=3)
        except PlatformError as e:
            print("SECOND", e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    assert done.returncode == 0, done.stderr[-2000:]
    assert lines["FIRST"].startswith(f"cannot connect to the Ray cluster at 127.0.0.1:{grpc_port}: ray.init did not "
                                     "connect within 3 s"), done.stdout
    assert float(lines["SECONDS"]) < 15
    assert lines["STATE"] == "True"  # not wedged: the next may connect
    assert "connection was refused" in lines["SECOND"], done.stdout


