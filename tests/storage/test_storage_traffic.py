"""Issue 18 §2 and §3: storage credentials go only to the configured endpoint.

* Proxy variables in a process's environment (what an Invoker could set for the workers before
  the fix, or anything else) never route storage traffic: the Azure Blob (aiohttp), S3 (botocore)
  and plain-HTTP (httpx) clients ignore them. A loopback listener set as every proxy receives
  nothing while each backend lists and reads real data (Azurite, moto, a local HTTP server).
* Redirects: an allowed host answering ``302 → http://127.0.0.2:<port>/internal/secret.csv`` is
  not followed into a host the SSRF guard refuses (at invoke, and in the worker's GET); a redirect
  on the same host is followed.
"""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from batchpoint.exceptions import UnsafeInputError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.registry import open_backend
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from fixtures.inproc import workspace

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class Listener:
    """A TCP listener that records every connection (and its first bytes) it receives."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(4096))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def proxy(monkeypatch) -> Iterator[Listener]:
    listener = Listener()
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, f"http://127.0.0.1:{listener.port}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    yield listener
    listener.close()


def _read_everything(backend, prefix: str) -> dict[str, bytes]:
    files = {}
    for info in backend.iter_files(prefix):
        with backend.open_read(info.path) as handle:
            files[info.path] = handle.read()
    return files


def test_azure_blob_ignores_proxy_variables(proxy, azurite_blob_url):
    from azure.storage.blob import BlobServiceClient

    container = f"proxy{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient(azurite_blob_url, credential={"account_name": AZURITE_ACCOUNT_NAME,
                                                              "account_key": AZURITE_ACCOUNT_KEY}, use_env_settings=False)
    service.create_container(container).upload_blob("data/a.csv", b"x\n1\n")
    spec = StorageSpec("azure_blob", {"account_name": AZURITE_ACCOUNT_NAME, "container_name": container,
                                      "blob_endpoint_url": azurite_blob_url},
                       {"kind": "account_key", "account_key": AZURITE_ACCOUNT_KEY})
    assert _read_everything(open_backend(spec), "data") == {"data/a.csv": b"x\n1\n"}
    assert proxy.received == []


def test_s3_ignores_proxy_variables(proxy, s3_endpoint):
    import boto3
    from botocore.config import Config

    bucket = f"proxy-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_ACCESS_KEY_ID, region_name=S3_REGION,
                      aws_secret_access_key=S3_SECRET_ACCESS_KEY, config=Config(proxies={}))
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/a.csv", Body=b"x\n1\n")
    spec = StorageSpec("s3", {"bucket": bucket, "endpoint_url": s3_endpoint, "region": S3_REGION},
                       {"kind": "aws_keys", "aws_access_key_id": S3_ACCESS_KEY_ID,
                        "aws_secret_access_key": S3_SECRET_ACCESS_KEY})
    assert _read_everything(open_backend(spec), "data") == {"data/a.csv": b"x\n1\n"}
    assert proxy.received == []


class _Files(http.server.BaseHTTPRequestHandler):
    """``/data/a.csv`` (and ``/sig`` requiring a SAS-like query); ``/hop`` redirects on the same
    host; ``/away`` and ``/away-on-get`` redirect to ``server.away`` (HEAD answered 200 by the latter)."""

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bool) -> None:
        path = self.path.split("?")[0]
        if path == "/hop":
            self._redirect(f"http://127.0.0.1:{self.server.server_port}/data/a.csv")
        elif path == "/away" or (path == "/away-on-get" and body):
            self._redirect(self.server.away)
        elif path in ("/data/a.csv", "/away-on-get"):
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            if body:
                self.wfile.write(b"x\n1\n")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)


@pytest.fixture
def files_server() -> Iterator[tuple[http.server.HTTPServer, Listener]]:
    internal = Listener("127.0.0.2")  # the host the guard refuses: must receive nothing
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.away = f"http://127.0.0.2:{internal.port}/internal/secret.csv"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, internal
    server.shutdown()
    server.server_close()
    internal.close()


def _https_backend(server) -> object:
    return open_backend(StorageSpec("https", {"base_url": f"http://127.0.0.1:{server.server_port}"},
                                    {"kind": "sas", "sas_token": "sv=2024&sig=secret"}))


def test_http_backend_ignores_proxy_variables(proxy, files_server):
    server, _ = files_server
    backend = _https_backend(server)
    assert backend.is_file("data/a.csv")
    with backend.open_read("data/a.csv") as handle:
        assert handle.read() == b"x\n1\n"
    assert proxy.received == []


def test_redirect_on_the_same_host_is_followed(files_server):
    server, internal = files_server
    with _https_backend(server).open_read("hop") as handle:
        assert handle.read() == b"x\n1\n"
    assert internal.received == []


@pytest.mark.parametrize("path", ["away", "away-on-get"])
def test_worker_read_does_not_follow_a_redirect_to_a_refused_host(files_server, path):
    """The worker's GET (``open_read``): HEAD may answer 200 and GET redirect."""
    server, internal = files_server
    with pytest.raises(UnsafeInputError) as raised:
        with _https_backend(server).open_read(path) as handle:
            handle.read()
    message = str(raised.value)
    assert "redirected to http://127.0.0.2:" in message and "loopback" in message
    assert "sig=secret" not in message
    assert internal.received == []


def test_report_invoke_on_a_redirect_into_a_refused_host(tmp_path, files_server):
    """The report: an allowed host (listed by the operator) answering 302 → 127.0.0.2."""
    server, internal = files_server
    with workspace(tmp_path, storage={"allow_private_hosts": ["127.0.0.1"]}) as ws:
        ws.deploy("redirects")
        uri = f"http://127.0.0.1:{server.server_port}/away"
        body = {"properties": {"InputData": {"data": {"JobInputType": "UriFile", "Uri": uri}}}}
        response = ws.owner.post("/batchEndpoints/redirects/invoke", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "unsafe_input"
        assert "redirected to http://127.0.0.2:" in response.json()["error"]["message"]
        assert ws.owner.get("/jobs").json() == []
        # the same server's own file is still an input
        ok = {"properties": {"InputData": {"data": {"JobInputType": "UriFile",
                                                     "Uri": f"http://127.0.0.1:{server.server_port}/data/a.csv"}}}}
        assert ws.owner.post("/batchEndpoints/redirects/invoke", json=ok).status_code == 202
    assert internal.received == []
