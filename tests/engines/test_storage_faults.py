"""A storage error while a worker fetches a file (acceptance d), on the engine with real worker
processes reading over HTTP from a small server in the test: a file that is gone is an ``input``
failure; a transient fault is a ``platform`` failure, retried (and the mini-batch then scored);
a fault that persists fails the job naming the URL and the cause — never a ``user`` failure."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.exceptions import PlatformError
from batchpoint.storage.base import StorageSpec

pytestmark = pytest.mark.timeout(120)

SCRIPT = '''
def init():
    pass

def run(mini_batch):
    return [open(path).read().strip() for path in mini_batch]
'''
FLAKY_FAILURES = 4  # more than one fetch's own retries (3): the first fetch fails, the platform retry succeeds


class _Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        self.hits[name] += 1
        if name == "gone.txt":
            self._answer(404, b"not found")
        elif name == "down.txt" or (name == "flaky.txt" and self.hits[name] <= FLAKY_FAILURES):
            self._answer(503, b"busy")
        else:
            self._answer(200, f"content of {name}".encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_store() -> Iterator[str]:
    _Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/files"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _job(tmp_path: Path, base_url: str) -> EngineJob:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCRIPT)
    return EngineJob(name="faults", workers=1, scorer={"code_dir": str(tmp_path / "code"), "scoring_script": "score.py"},
                     sources={"in": StorageSpec("https", {"base_url": base_url})}, policy=RetryPolicy(0, 60, 0),
                     parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"))


def _batches(*names: str) -> Iterator[MiniBatch]:
    return iter([MiniBatch(i, (FileRef("in", name),)) for i, name in enumerate(names)])


def test_fetch_errors_are_input_or_platform_never_user(tmp_path: Path, http_store: str) -> None:
    job = _job(tmp_path, http_store)
    outcomes = []
    LocalPoolEngine().run(job, _batches("ok.txt", "flaky.txt", "gone.txt"), outcomes.append, threading.Event())
    by_file = {o.batch.files[0].path: o for o in outcomes}
    assert set(by_file) == {"ok.txt", "flaky.txt", "gone.txt"} and len(outcomes) == 3
    assert by_file["ok.txt"].ok and by_file["flaky.txt"].ok  # the transient fault was retried, not reported
    segment, offset, length = by_file["flaky.txt"].segment  # appended to its worker's segment of the job
    with open(tmp_path / "parts" / segment, "rb") as part:
        part.seek(offset)
        assert part.read(length) == b"content of flaky.txt\n"
    assert _Handler.hits["flaky.txt"] == FLAKY_FAILURES + 1
    gone = by_file["gone.txt"].error
    assert gone["kind"] == "input" and gone["type"] == "StorageNotFoundError", gone
    assert "gone.txt" in gone["message"] and "was not found" in gone["message"]
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "platform failure, retried" in log and "HTTP 503" in log


def test_a_storage_fault_that_persists_fails_the_job_naming_the_url(tmp_path: Path, http_store: str) -> None:
    job = _job(tmp_path, http_store)
    outcomes = []
    with pytest.raises(PlatformError) as raised:
        LocalPoolEngine().run(job, _batches("ok.txt", "down.txt"), outcomes.append, threading.Event())
    message = str(raised.value)
    assert f"{http_store}/down.txt" in message and "HTTP 503" in message and "4 times in a row" in message, message
    assert [o.batch.files[0].path for o in outcomes] == ["ok.txt"] and outcomes[0].ok  # finished work was reported
