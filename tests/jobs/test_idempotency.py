"""Idempotent invoke (acceptance 3): ``repeatability-request-id`` (and Azure's
``repeatability_request-id`` spelling) on ``POST /batchEndpoints/<name>/invoke``.

* Ten concurrent invokes with one key create exactly one job — on SQLite (the session server) and
  on PostgreSQL (a server of its own on a private database) — and each answers 202 with that job.
* The same key with another body is 409 naming the key; keys are per principal.
* The SDK sends a fresh key per call, and the *same* key again on its transport retries: through a
  proxy that loses the server's first answer (a 503 after the job was made), one call still makes
  one job.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchpoint import Input, MLClient
from batchpoint.exceptions import ConflictError
from conftest import HEART_UNLABELED, ServerHandle, record_secret, start_server, stop_server
from fixtures.faults import make_endpoint

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "faults-idem"
CONCURRENT = 10


def _body(path: str, **settings: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"InputData": {"input_data": {"JobInputType": "UriFolder", "Uri": path}}}
    if settings:
        props["Settings"] = settings
    return {"properties": props}


def _uploaded_input(client: MLClient) -> str:
    """A data store path of the heart files (uploaded once by a plain invoke), so raw REST calls
    need no upload."""
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder",
                                                                           path=str(HEART_UNLABELED)))
    return client.jobs.get(job.name).inputs["input_data"]["path"]


def _jobs(server: ServerHandle) -> set[str]:
    with server.rest() as rest:
        return {j["name"] for j in rest.get(f"/batchEndpoints/{ENDPOINT}/jobs", params={"limit": 1000}).json()}


def _concurrent_invokes(server: ServerHandle, body: dict[str, Any], key: str) -> list[httpx.Response]:
    barrier = threading.Barrier(CONCURRENT)

    def one(i: int) -> httpx.Response:
        header = ("repeatability-request-id", "repeatability_request-id")[i % 2]  # both spellings
        with server.rest() as rest:
            barrier.wait(30)
            return rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body, headers={header: key})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


def _assert_one_job(server: ServerHandle, path: str) -> None:
    before = _jobs(server)
    key = str(uuid.uuid4())
    answers = _concurrent_invokes(server, _body(path), key)
    assert [a.status_code for a in answers] == [202] * CONCURRENT, [(a.status_code, a.text[:200]) for a in answers]
    names = {a.json()["name"] for a in answers}
    assert len(names) == 1, names
    assert _jobs(server) - before == names  # exactly one job was made
    assert {a.headers.get("repeatability-result") for a in answers} == {"accepted"}

    with server.rest() as rest:  # the same key, another request: refused, naming the key
        other = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_body(path, mini_batch_size=2),
                          headers={"repeatability-request-id": key})
        assert other.status_code == 409, other.text
        assert key in other.json()["error"]["message"] and names.pop() in other.json()["error"]["message"]
        bad = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_body(path),
                        headers={"repeatability-request-id": "x" * 129})
        assert bad.status_code == 400 and "repeatability-request-id" in bad.json()["error"]["message"], bad.text


def test_ten_concurrent_invokes_with_one_key_make_one_job_on_sqlite(
        server: ServerHandle, ml_client: MLClient, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path / "code", workers=1, mini_batch_size=4)
    path = _uploaded_input(ml_client)
    _assert_one_job(server, path)

    # keys are per principal: another invoker's request with the same key is its own
    key, principal = str(uuid.uuid4()), f"user:idem-{uuid.uuid4().hex[:6]}"
    ml_client.principals.create(principal)
    ml_client.role_assignments.create(principal, "Invoker", f"endpoint:{ENDPOINT}")
    # the input is the owner's upload: another principal reads it only with data/read on the store
    ml_client.role_assignments.create(principal, "DataReader", "datastore:workspaceblobstore")
    other_key = record_secret(ml_client.principals.create_key(principal)["key"])
    with server.rest() as owner, httpx.Client(base_url=server.url, timeout=60,
                                               headers={"Authorization": f"Bearer {other_key}"}) as other:
        mine = owner.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_body(path), headers={"repeatability-request-id": key})
        theirs = other.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_body(path),
                            headers={"repeatability-request-id": key})
    assert (mine.status_code, theirs.status_code) == (202, 202), (mine.text, theirs.text)
    assert mine.json()["name"] != theirs.json()["name"]


@pytest.fixture
def postgres_server(postgres_url: str, tmp_path: Path) -> Iterator[ServerHandle]:
    """A server on a private database of the test PostgreSQL server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    database = f"faults_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(postgres_url).set(database=database).render_as_string(hide_password=False)
    handle = start_server(tmp_path / "pg-home", {"BATCHPOINT_DATABASE_URL": url})
    try:
        yield handle
    finally:
        stop_server(handle)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_ten_concurrent_invokes_with_one_key_make_one_job_on_postgresql(
        postgres_server: ServerHandle, heart_model_dir: Path, tmp_path: Path) -> None:
    with MLClient(endpoint=postgres_server.url, home=postgres_server.home) as client:
        make_endpoint(client, ENDPOINT, heart_model_dir, tmp_path / "code", workers=1, mini_batch_size=4)
        _assert_one_job(postgres_server, _uploaded_input(client))


class _LosingProxy(BaseHTTPRequestHandler):
    """Forwards to the real server; the first invoke's answer is lost (503 after the job was made)."""

    target = ""
    auth: dict[str, str] = {}
    invoke_keys: list[str | None] = []

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = httpx.request(self.command, self.target + self.path, content=body, headers=headers, timeout=60)
        if self.path.endswith("/invoke"):
            self.invoke_keys.append(self.headers.get("repeatability-request-id"))
            if len(self.invoke_keys) == 1:
                answer = httpx.Response(503, content=b'{"error": {"message": "lost"}}')
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


def test_the_sdk_resends_its_key_on_a_transport_retry_and_one_call_makes_one_job(
        server: ServerHandle, ml_client: MLClient, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path / "code", workers=1, mini_batch_size=4)
    path = _uploaded_input(ml_client)
    _LosingProxy.target, _LosingProxy.invoke_keys = server.url, []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _LosingProxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        before = _jobs(server)
        with MLClient(endpoint=f"http://127.0.0.1:{proxy.server_address[1]}", home=server.home) as client:
            job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder", path=path))
            second = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder", path=path))
        keys = _LosingProxy.invoke_keys
        assert len(keys) == 3 and keys[0] and keys[0] == keys[1] != keys[2], keys  # resent as it was; fresh per call
        assert _jobs(server) - before == {job.name, second.name} and job.name != second.name
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)

    chosen = str(uuid.uuid4())  # an id the caller picks: the same job however often it is sent
    again = [ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder", path=path),
                                              repeatability_request_id=chosen).name for _ in range(2)]
    assert again[0] == again[1]
    with pytest.raises(ConflictError, match=chosen):
        ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder", path=path),
                                         repeatability_request_id=chosen, mini_batch_size=1)
